"""Edges found by trying to break the integrity guarantees from outside (a red-team pass).

Each test reproduces one way a run used to end silently wrong, half committed, or stuck, and
asserts what the README promises instead.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction import commit
from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.errors import LuccaDataChangedError, LuccaStorageError
from airflow_provider_lucca.extraction.lock import LOCK_NAME, DatasetLock, LockPolicy
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sweep import sweep_unlisted
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.sweep import RealizedTrainingsSweepOperator
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, tree

LOG = logging.getLogger("tests.integrity_edges")
WINDOW = DateWindow(date(2025, 1, 3), date(2025, 1, 6))
DAYS = [day.isoformat() for day in WINDOW.days()]


def run(server: SandboxServer, base: Any, **options: Any) -> dict[str, Any]:
    config = ClientConfig(
        base_url=server.url, api_key=SANDBOX_KEY, requests_per_minute=0, page_size=100
    )
    lock_policy = options.pop("lock_policy", None)
    with LuccaClient(config) as client:
        return extract_realized_trainings(
            client,
            ExtractionRequest(window=WINDOW, **options),
            base,
            log=LOG,
            lock_policy=lock_policy,
        )


def committed_ids(base: Any) -> dict[str, list[object]]:
    return {
        day: sorted(r["id"] for r in read_partition(base, date.fromisoformat(day)))
        for day in DAYS
        if read_manifest(base, date.fromisoformat(day)) is not None
    }


def truth(server: SandboxServer) -> dict[str, list[object]]:
    return {
        day: sorted(r["id"] for r in server.records if r["sessionEndsOn"] == day) for day in DAYS
    }


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    config = SandboxConfig(
        records=1500, start=date(2024, 12, 20), end=date(2025, 1, 20), order="end_date"
    )
    with SandboxServer(config) as sandbox:
        yield sandbox


def leave_and_enter_after_page_one(server: SandboxServer) -> None:
    """One served record leaves the window and another enters a later day after request 1:
    the count stays, no id repeats, and the pages shift so that one record is never served."""
    in_window = sorted(
        (r for r in server.records if r["sessionEndsOn"] in DAYS),
        key=lambda r: (r["sessionEndsOn"], r["id"]),
    )
    outside = next(r for r in server.records if r["sessionEndsOn"] == "2025-01-15")
    server.configure(
        moves=[
            {"id": in_window[0]["id"], "to": ["2025-01-18"], "after_request": 1},
            {"id": outside["id"], "to": [DAYS[-1]], "after_request": 1},
        ]
    )
    server.reset_stats()


def test_without_confirm_reads_a_leave_and_enter_loses_a_record(
    server: SandboxServer, tmp_path: Path
) -> None:
    """The documented limit of a single read, shown so that the next test means something."""
    leave_and_enter_after_page_one(server)
    summary = run(server, ObjectStoragePath(f"file://{tmp_path}"))
    assert summary["reads"] == 1
    assert committed_ids(ObjectStoragePath(f"file://{tmp_path}")) != truth(server)


def test_confirm_reads_catches_a_record_leaving_while_another_enters(
    server: SandboxServer, tmp_path: Path
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    leave_and_enter_after_page_one(server)
    summary = run(server, base, confirm_reads=True)
    assert summary["reads"] == 3  # read 1 differs from read 2, read 3 confirms read 2
    assert committed_ids(base) == truth(server)


def test_confirm_reads_on_stable_data_costs_one_more_read(
    server: SandboxServer, tmp_path: Path
) -> None:
    single = run(server, ObjectStoragePath(f"file://{tmp_path / 'single'}"))
    base = ObjectStoragePath(f"file://{tmp_path / 'confirmed'}")
    summary = run(server, base, confirm_reads=True)
    assert summary["reads"] == 2
    assert summary["requests"] == 2 * single["requests"]
    assert committed_ids(base) == truth(server)


def test_confirm_reads_fails_when_no_two_reads_agree(server: SandboxServer, tmp_path: Path) -> None:
    in_window = sorted(
        (r for r in server.records if r["sessionEndsOn"] in DAYS),
        key=lambda r: (r["sessionEndsOn"], r["id"]),
    )
    # The record hops between two days after every read: each read is consistent on its own.
    pages = -(-len(in_window) // 100)
    server.configure(
        moves=[
            {
                "id": in_window[-1]["id"],
                "to": [DAYS[0], DAYS[-1]],
                "after_request": pages,
                "every": pages,
            }
        ]
    )
    server.reset_stats()
    with pytest.raises(LuccaDataChangedError, match="served other records or days"):
        run(server, ObjectStoragePath(f"file://{tmp_path}"), confirm_reads=True, max_rereads=1)
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- commit edges


@pytest.fixture
def locks(monkeypatch: pytest.MonkeyPatch) -> list[DatasetLock]:
    """Every DatasetLock made during the test, to play a lease running out at a chosen line."""
    made: list[DatasetLock] = []
    real_init = DatasetLock.__init__

    def remember(self: DatasetLock, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(DatasetLock, "__init__", remember)
    return made


class TaskTimeout(BaseException):
    """Like Airflow's AirflowTaskTimeout: raised by a signal handler, not an Exception."""


def test_a_task_timeout_during_the_manifests_puts_the_window_back(
    server: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    run(server, base)
    before = tree(tmp_path)
    server.configure(delete_ids=[truth(server)[DAYS[0]][0], truth(server)[DAYS[-1]][0]])
    original, calls = commit.write_whole, {"n": 0}

    def times_out(path: Any, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise TaskTimeout("Timeout, PID 1234")
        original(path, data)

    monkeypatch.setattr(commit, "write_whole", times_out)
    with pytest.raises(TaskTimeout):
        run(server, base)
    after = tree(tmp_path)
    assert after == before  # manifests put back, the run's parts removed, the lock released


def test_a_lease_that_ran_out_mid_manifests_restores_when_nobody_took_over(
    server: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    locks: list[DatasetLock],
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    run(server, base)
    before = tree(tmp_path)
    server.configure(delete_ids=[truth(server)[DAYS[0]][0]])
    original, calls = commit.write_whole, {"n": 0}

    def slow_store(path: Any, data: bytes) -> None:
        original(path, data)
        calls["n"] += 1
        if calls["n"] == 1:  # the lease runs out while the first manifest is written
            for lock in locks:
                lock._valid_until = 0.0

    monkeypatch.setattr(commit, "write_whole", slow_store)
    with pytest.raises(LuccaStorageError, match="lease of the dataset lock") as info:
        run(server, base)
    assert info.value.phase == "manifests"
    assert info.value.committed_days == ()
    after = tree(tmp_path)
    assert after == before


def test_a_run_past_its_lease_does_not_clean_up_the_next_holders_files(
    server: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    locks: list[DatasetLock],
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    run(server, base)
    foreign = tmp_path / f"session_end_on={DAYS[1]}" / "part-00000-nextholder01.jsonl.gz"
    original = commit.remove_unlisted

    def paused_after_first_day(directory: Any, keep: set[str]) -> None:
        original(directory, keep)
        foreign.write_bytes(b"parts of the run that took the lock over")
        locks[-1]._valid_until = 0.0  # this process was paused past its lease here

    monkeypatch.setattr(commit, "remove_unlisted", paused_after_first_day)
    with pytest.raises(LuccaStorageError, match="while writing cleanup") as info:
        run(server, base)
    assert info.value.phase == "cleanup"
    assert foreign.exists()


# --------------------------------------------------------------------------- lock edges


@pytest.mark.parametrize(
    "content",
    [
        b"{}",
        json.dumps({"token": "x", "expires_at": "2020-01-01T00:00:00+00:00"}).encode(),
        json.dumps({"token": "x", "expires_at_epoch": "1700000000"}).encode(),
        b'{"token": "x", "expires_at_epoch": NaN}',
        json.dumps({"token": "x", "expires_at_epoch": 4102444800.0}).encode(),  # 2100
    ],
    ids=["empty object", "no epoch", "epoch as text", "NaN", "a lease in 2100"],
)
def test_an_old_lock_of_any_shape_is_taken_over(tmp_path: Path, content: bytes) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    (tmp_path / LOCK_NAME).write_bytes(content)
    two_hours_ago = time.time() - 7200
    os.utime(tmp_path / LOCK_NAME, (two_hours_ago, two_hours_ago))
    lock = DatasetLock(base, "newholder001", run_id="r", policy=LockPolicy(timeout=2), log=LOG)
    with lock:
        assert json.loads((tmp_path / LOCK_NAME).read_bytes())["token"] == "newholder001"


def test_a_lock_whose_create_answer_was_lost_is_recognised_as_ours(tmp_path: Path) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    lock = DatasetLock(base, "mine00000001", run_id="r", policy=LockPolicy(timeout=0), log=LOG)
    (tmp_path / LOCK_NAME).write_bytes(lock._content())  # the store kept our create
    started = time.monotonic()
    with lock:
        lock.verify()
    assert time.monotonic() - started < 1
    assert not (tmp_path / LOCK_NAME).exists()


# --------------------------------------------------------------------------- sweep edges


@pytest.mark.parametrize(
    "manifest",
    [
        b"[]",
        b"{}",
        b'{"manifest_version": 2, "parts": []}',
        b'{"manifest_version": 1, "files": null}',
        b'{"manifest_version": 1, "files": [{"records": 3}]}',
        b'"text"',
    ],
    ids=["a list", "empty", "a future version", "files null", "entry without name", "a string"],
)
def test_the_sweep_leaves_a_partition_with_a_manifest_it_does_not_understand(
    tmp_path: Path, manifest: bytes
) -> None:
    day = tmp_path / "session_end_on=2025-01-03"
    day.mkdir()
    (day / "_manifest.json").write_bytes(manifest)
    part = day / "part-00000-abcdef012345.jsonl.gz"
    part.write_bytes(b"data")
    result = sweep_unlisted(ObjectStoragePath(f"file://{tmp_path}"), older_than_seconds=0, log=LOG)
    assert result.removed == []
    assert part.exists()


def test_the_sweep_ignores_directories_that_only_look_like_partitions(tmp_path: Path) -> None:
    odd = tmp_path / "session_end_on=20250103"
    odd.mkdir()
    (odd / "part-00000-abcdef012345.jsonl.gz").write_bytes(b"data")
    result = sweep_unlisted(ObjectStoragePath(f"file://{tmp_path}"), older_than_seconds=0, log=LOG)
    assert result.partitions == 0
    assert (odd / "part-00000-abcdef012345.jsonl.gz").exists()


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("owner_ids", "1,\u00b2"),
        ("owner_ids", "\u0664\u0661\u0666"),
        ("owner_ids", "[" * 100_000),
        ("output_path", "s3://"),
        ("output_path", "/data/lucca\x00x"),
        ("fail_on_count_mismatch", "false"),
        ("confirm_reads", 1),
    ],
)
def test_more_settings_fail_when_the_dag_is_parsed_naming_them(
    tmp_path: Path, name: str, value: object
) -> None:
    kwargs: dict[str, Any] = {"output_path": str(tmp_path), name: value}
    with pytest.raises(LuccaConfigError, match=rf"\b{name}\b"):
        RealizedTrainingsOperator(task_id="extract", **kwargs)


@pytest.mark.parametrize("value", [None, 123, "", "relative/path"])
def test_the_sweep_operator_checks_its_output_path(value: object) -> None:
    with pytest.raises(LuccaConfigError, match="output_path"):
        RealizedTrainingsSweepOperator(task_id="sweep", output_path=value)  # type: ignore[arg-type]


def test_a_directory_inside_a_day_neither_fails_the_next_run_nor_is_removed(
    server: SandboxServer, tmp_path: Path
) -> None:
    """A notebook's ``.ipynb_checkpoints`` left inside a day: the next run of the day commits and
    cleans up its own files (it used to fail every run in its cleanup, retryably), and leaves the
    directory, which is no part of the dataset, alone."""
    base = ObjectStoragePath(tmp_path.as_uri())
    run(server, base)
    checkpoints = tmp_path / f"session_end_on={DAYS[0]}" / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "notes.json").write_text("{}")

    run(server, base)

    assert committed_ids(base) == truth(server)
    assert (checkpoints / "notes.json").read_text() == "{}"
