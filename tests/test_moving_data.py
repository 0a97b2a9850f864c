"""Records that move to another day while a run pages, over real HTTP.

A server ordering by end date with offset cursors (the sandbox's ``order="end_date"``) shifts its
pages when a record's ``sessionEndsOn`` changes mid-run: the moved record is served twice, on two
days, and the record at the page boundary is never served, with as many items as the count. The
run must see it across the whole read, read the window again, and commit only a consistent read,
or fail committing nothing with a message that says what moved.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.errors import LuccaDataChangedError
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import RecordMove, SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY

LOG = logging.getLogger("tests.moving_data")
DAYS = [f"2025-01-0{n}" for n in range(1, 6)]
WINDOW = DateWindow(date(2025, 1, 1), date(2025, 1, 6))


def sandbox_with(move: dict[str, Any] | None) -> tuple[SandboxServer, dict[str, Any]]:
    """The issue's case: 250 records over five days in end-date order; ``move`` applies to a
    day-1 record served on page 1."""
    server = SandboxServer(
        SandboxConfig(records=250, start=date(2025, 1, 1), end=date(2025, 1, 5), order="end_date")
    )
    ordered = sorted(server.records, key=lambda r: (r["sessionEndsOn"], r["id"]))
    moved = ordered[10]
    assert moved["sessionEndsOn"] == DAYS[0]
    if move is not None:
        server.configure(moves=[RecordMove.from_dict({"id": moved["id"], **move}).to_dict()])
    return server, moved


def run(server: SandboxServer, base: Any, **options: Any) -> dict[str, Any]:
    config = ClientConfig(
        base_url=server.url, api_key=SANDBOX_KEY, requests_per_minute=0, page_size=100
    )
    request = ExtractionRequest(window=WINDOW, **options)
    with LuccaClient(config) as client:
        return extract_realized_trainings(client, request, base, log=LOG)


def committed(base: Any) -> dict[str, list[object]]:
    return {
        day: sorted(r["id"] for r in read_partition(base, date.fromisoformat(day)))
        for day in DAYS
        if read_manifest(base, date.fromisoformat(day)) is not None
    }


def truth(server: SandboxServer) -> dict[str, list[object]]:
    return {
        day: sorted(r["id"] for r in server.records if r["sessionEndsOn"] == day) for day in DAYS
    }


def test_a_record_moved_while_paging_is_read_again_and_committed_once(tmp_path: Path) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    server, moved = sandbox_with({"to": [DAYS[4]], "after_request": 1})
    with server:
        server.reset_stats()
        summary = run(server, base)
        assert server.stats()["moves_applied"] == 1
        assert summary["reads"] == 2  # the first read served the record twice and lost another
        assert server.stats()["requests"] == 6
        assert committed(base) == truth(server)
        everywhere = Counter(i for ids in committed(base).values() for i in ids)
        assert everywhere[moved["id"]] == 1
        assert sum(everywhere.values()) == 250 == summary["records"]


def test_data_that_keeps_moving_fails_naming_the_record_and_commits_nothing(
    tmp_path: Path,
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    server, moved = sandbox_with(None)
    with server:
        run(server, base)
        before = committed(base)
        # The record goes back and forth between day 1 and day 5 after the first page of every
        # read (a read is three pages): reads 1 and 3 serve it on both days, read 2 loses it.
        server.configure(
            moves=[{"id": moved["id"], "to": [DAYS[4], DAYS[0]], "after_request": 1, "every": 3}]
        )
        server.reset_stats()
        with pytest.raises(LuccaDataChangedError) as info:
            run(server, base)
        message = str(info.value)
        assert f"id={moved['id']} on {DAYS[0]} then {DAYS[4]}" in message
        assert "each of 3 reads" in message
        assert "Nothing was committed" in message
        assert server.stats()["requests"] == 9  # three reads of three pages, then it stopped
        assert committed(base) == before


def test_max_rereads_zero_fails_at_the_first_inconsistent_read(tmp_path: Path) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    server, _moved = sandbox_with({"to": [DAYS[4]], "after_request": 1})
    with server:
        server.reset_stats()
        with pytest.raises(LuccaDataChangedError, match="each of 1 reads"):
            run(server, base, max_rereads=0)
    assert committed(base) == {}


def test_without_the_count_check_a_moved_record_is_kept_once_on_its_last_day(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    server, moved = sandbox_with(None)
    with server:
        server.configure(
            moves=[{"id": moved["id"], "to": [DAYS[4], DAYS[0]], "after_request": 1, "every": 3}]
        )
        server.reset_stats()
        summary = run(server, base, fail_on_count_mismatch=False)
        assert "Committing it anyway" in caplog.text
        everywhere = Counter(i for ids in committed(base).values() for i in ids)
        assert everywhere[moved["id"]] == 1
        assert moved["id"] in committed(base)[DAYS[4]]  # where the last read served it last
        assert max(everywhere.values()) == 1
        assert summary["reads"] == 3
