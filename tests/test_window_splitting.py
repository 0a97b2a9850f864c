"""Windows that split themselves where Lucca keeps answering 408 ("send a simpler request").

A request running over 5 s is aborted by Lucca with 408; a wide window (years of history) can
keep getting it. After a few timeouts of the same request the run reads the window in two halves
instead of spending every retry on it, down to single days, and the records at the seams are
neither lost nor doubled: a record that moves from a half not read yet into one already read is
caught by a recount of each half at the end, and the read is made again.
"""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import (
    ClientConfig,
    LuccaClient,
    LuccaRetriesExhaustedError,
    LuccaTooSlowError,
    RetryPolicy,
)
from airflow_provider_lucca.client.defaults import TIMEOUTS_BEFORE_SPLIT
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.spool import DaySpooler
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import FaultSchedule, SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, read_dataset, tree

LOG = logging.getLogger("tests.window_splitting")
#: Enough attempts to reach the split, with millisecond waits.
RETRY = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.002, jitter=0.0)
JANUARY = DateWindow(date(2025, 1, 1), date(2025, 2, 1))


def client(server: SandboxServer, **config: Any) -> LuccaClient:
    settings: dict[str, Any] = {"requests_per_minute": 0, "retry": RETRY, **config}
    return LuccaClient(ClientConfig(base_url=server.url, api_key=SANDBOX_KEY, **settings))


def extract(server: SandboxServer, out: Path, window: DateWindow, **config: Any) -> Any:
    with client(server, **config) as lucca:
        return extract_realized_trainings(
            lucca, ExtractionRequest(window=window), ObjectStoragePath(out.as_uri()), log=LOG
        )


def truth(server: SandboxServer, window: DateWindow) -> dict[str, list[dict[str, Any]]]:
    by_day: dict[str, list[dict[str, Any]]] = {day.isoformat(): [] for day in window.days()}
    for record in server.records:
        if record["sessionEndsOn"] in by_day:
            by_day[record["sessionEndsOn"]].append(record)
    return {day: sorted(rows, key=lambda r: r["id"]) for day, rows in by_day.items()}


def windows_asked(server: SandboxServer) -> list[tuple[str, str]]:
    """The (sessionEndOnAfter, sessionEndOnBefore) of every API request, in arrival order."""
    asked = []
    for entry in server.request_log()["requests"]:
        query = parse_qs(entry["query"])
        asked.append((query["sessionEndOnAfter"][0], query["sessionEndOnBefore"][0]))
    return asked


def timeouts_first(count: int) -> FaultSchedule:
    return FaultSchedule(at=dict.fromkeys(range(1, count + 1), "408"))


def test_a_window_that_keeps_timing_out_is_read_in_halves_exactly(tmp_path: Path) -> None:
    with SandboxServer(SandboxConfig(records=3000)) as server:
        server.configure(faults=timeouts_first(TIMEOUTS_BEFORE_SPLIT).to_dict())
        summary: ExtractionSummary = extract(server, tmp_path, JANUARY)
        asked = windows_asked(server)

    assert read_dataset(tmp_path) == truth(server, JANUARY)
    assert summary["slices"] == 2
    assert summary["duplicates_dropped"] == 0
    # Three timeouts of the whole month, then its halves (bounds exclusive: day before, end).
    whole = ("2024-12-31", "2025-02-01")
    assert asked[:TIMEOUTS_BEFORE_SPLIT] == [whole] * TIMEOUTS_BEFORE_SPLIT
    halves = [("2024-12-31", "2025-01-16"), ("2025-01-15", "2025-02-01")]
    assert sorted(set(asked[TIMEOUTS_BEFORE_SPLIT:])) == halves
    # Each half was read, then counted once more: nothing moved between them.
    assert asked[-2:] == halves


def test_pages_of_a_slice_given_up_on_midway_are_dropped(tmp_path: Path) -> None:
    """Page 1 of the month arrives, then page 2 keeps timing out: page 1's records are dropped
    from the spool, and the halves serve each record once."""
    with SandboxServer(SandboxConfig(records=3000)) as server:
        server.configure(faults={"at": dict.fromkeys(range(2, 2 + TIMEOUTS_BEFORE_SPLIT), "408")})
        summary = extract(server, tmp_path, JANUARY)

    january = truth(server, JANUARY)
    assert summary["slices"] == 2
    assert summary["received"] == sum(map(len, january.values()))
    assert summary["duplicates_dropped"] == 0
    assert read_dataset(tmp_path) == january


def test_each_half_splits_again_while_it_times_out(tmp_path: Path) -> None:
    """The whole window, then its first half, then that half's first half time out: three
    slices, still exact."""
    with SandboxServer(SandboxConfig(records=3000)) as server:
        server.configure(faults=timeouts_first(3 * TIMEOUTS_BEFORE_SPLIT).to_dict())
        summary = extract(server, tmp_path, JANUARY)

    assert summary["slices"] == 4
    assert read_dataset(tmp_path) == truth(server, JANUARY)


@pytest.mark.parametrize("bounds", ["exclusive", "inclusive"])
def test_the_seams_hold_each_record_once_under_either_reading_of_the_bounds(
    tmp_path: Path, bounds: str
) -> None:
    """Under the inclusive reading, each half's request also returns its neighbour's edge day:
    those records are left to the half that owns the day."""
    with SandboxServer(SandboxConfig(records=3000, bounds=bounds)) as server:
        server.configure(faults=timeouts_first(TIMEOUTS_BEFORE_SPLIT).to_dict())
        summary = extract(server, tmp_path, JANUARY)

    assert summary["slices"] == 2
    assert summary["duplicates_dropped"] == 0
    assert read_dataset(tmp_path) == truth(server, JANUARY)


def test_a_record_moving_across_the_seam_between_the_halves_is_not_lost(tmp_path: Path) -> None:
    """A record of the second half moves into the first after the first was read: neither read
    serves it and every count still matches its items; the recount of the first half sees it
    and the window is read again."""
    window = DateWindow(date(2025, 1, 1), date(2025, 1, 9))
    with SandboxServer(
        SandboxConfig(records=160, start=date(2025, 1, 1), end=date(2025, 1, 8))
    ) as server:
        first, second = window.halves()
        in_first = [r for r in server.records if date.fromisoformat(r["sessionEndsOn"]) in first]
        assert len(in_first) <= 100  # the first half is one page: request 4
        mover = next(r for r in server.records if date.fromisoformat(r["sessionEndsOn"]) in second)
        server.configure(
            faults=timeouts_first(TIMEOUTS_BEFORE_SPLIT).to_dict(),
            moves=[{"id": mover["id"], "to": "2025-01-02", "after_request": 4}],
        )
        summary = extract(server, tmp_path, window)
        moved = next(r for r in server.records if r["id"] == mover["id"])

    assert moved["sessionEndsOn"] == "2025-01-02"
    assert summary["reads"] == 2
    got = read_dataset(tmp_path)
    assert got == truth(server, window)
    assert sum(r["id"] == mover["id"] for rows in got.values() for r in rows) == 1


def test_a_one_day_window_is_not_split_and_fails_after_its_retries(tmp_path: Path) -> None:
    day = DateWindow(date(2025, 1, 10), date(2025, 1, 11))
    with SandboxServer(SandboxConfig(records=3000)) as server:
        server.configure(faults={"rate": 1.0, "kinds": ["408"]})
        with pytest.raises(LuccaRetriesExhaustedError, match="408"):
            extract(server, tmp_path, day)
        assert server.stats()["requests"] == RETRY.max_attempts
    assert tree(tmp_path) == {}


def test_the_split_happens_when_the_retries_run_out_first(tmp_path: Path) -> None:
    """A connection allowing fewer attempts than the timeouts before a split still splits."""
    retry = RetryPolicy(max_attempts=2, backoff_base=0.001, backoff_max=0.002, jitter=0.0)
    with SandboxServer(SandboxConfig(records=3000)) as server:
        server.configure(faults=timeouts_first(2).to_dict())
        summary = extract(server, tmp_path, JANUARY, retry=retry)
    assert summary["slices"] == 2
    assert read_dataset(tmp_path) == truth(server, JANUARY)


def test_the_client_gives_up_on_a_request_that_keeps_timing_out() -> None:
    with SandboxServer(SandboxConfig(records=100)) as server:
        server.configure(faults={"rate": 1.0, "kinds": ["408"]})
        with client(server) as lucca, pytest.raises(LuccaTooSlowError, match="timed out 2 times"):
            lucca.count_realized_trainings(give_up_on_timeouts=2)
        assert server.stats()["requests"] == 2


def test_a_count_probe_reads_no_record() -> None:
    with SandboxServer(SandboxConfig(records=500)) as server, client(server) as lucca:
        attended = sum(r.get("hasAttended", True) is True for r in server.records)
        assert lucca.count_realized_trainings() == 500
        assert lucca.count_realized_trainings(has_attended=True) == attended
        assert lucca.count_realized_trainings(
            session_end_on_after="2025-03-31", session_end_on_before="2025-05-01"
        ) == sum(r["sessionEndsOn"].startswith("2025-04") for r in server.records)
        query = parse_qs(server.request_log()["requests"][0]["query"])
        assert query["limit"] == ["0"]
        assert query["fields.root"] == ["count"]


def test_a_spool_rolls_back_a_slice_given_up_on(tmp_path: Path) -> None:
    window = DateWindow(date(2025, 1, 1), date(2025, 1, 5))
    spooler = DaySpooler(window, str(tmp_path), flush_bytes=1)  # every page flushed
    kept = [{"id": 1, "sessionEndsOn": "2025-01-01"}, {"id": 2, "sessionEndsOn": "2025-01-03"}]
    spooler.add(kept)
    mark = spooler.mark()
    spooler.add(
        [{"id": 3, "sessionEndsOn": "2025-01-03"}, {"id": 1, "sessionEndsOn": "2025-01-04"}]
    )
    spooler.add(
        [{"id": 4, "sessionEndsOn": "2025-01-02"}, {"id": 5, "sessionEndsOn": "2024-12-31"}]
    )
    spooler.rollback(mark)
    spooler.add([{"id": 6, "sessionEndsOn": "2025-01-03"}])
    spooler.flush()

    def ids(day: str) -> list[bytes]:
        batches = spooler.read_lines(date.fromisoformat(day))
        return [line.split(b"\t")[0][1:] for batch in batches for line in batch]

    assert [ids(day.isoformat()) for day in window.days()] == [[b"1"], [], [b"2", b"6"], []]
    assert spooler.stats.received == 3
    assert spooler.stats.outside_window == 0
    assert spooler.ledger.repeats().moved == {}  # id 1's second day was rolled back
