"""Runs that overlap in time on one dataset, with real processes, on a local disk and on S3.

Two runs on overlapping windows, started together as a catchup or a backfill does when nothing
serialises them, used to leave manifests listing part files that the other run's cleanup had
deleted. The dataset lock makes them take turns; these tests race real processes at random
offsets and check every manifest against its files and the sandbox's truth.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.commit import MANIFEST_NAME, partition_dir, read_manifest
from airflow_provider_lucca.extraction.errors import LuccaLockError
from airflow_provider_lucca.extraction.lock import LOCK_NAME, DatasetLock, LockPolicy
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY

LOG = logging.getLogger("tests.concurrency")
RACE_CHILD = Path(__file__).resolve().parent / "race_child.py"
#: Daily runs with a 7-day lookback on consecutive days, as a catchup starts them.
WINDOWS = [("2025-05-01", "2025-05-09"), ("2025-05-02", "2025-05-10"), ("2025-04-30", "2025-05-08")]
TRIALS = 4


def dataset_days(base: Any) -> dict[str, list[object]]:
    """Record ids per committed day, read through the manifests with sizes and checksums
    checked: a manifest that lists a deleted file fails here."""
    result: dict[str, list[object]] = {}
    base.fs.invalidate_cache()  # this process listed it before the children rewrote it
    for directory in sorted(base.iterdir(), key=lambda path: path.name):
        if not directory.name.startswith("session_end_on="):
            continue
        day = date.fromisoformat(directory.name.split("=", 1)[1])
        if read_manifest(base, day) is None:
            continue
        result[day.isoformat()] = sorted(record["id"] for record in read_partition(base, day))
    return result


def truth_days(sandbox: SandboxServer, start: str, until: str) -> dict[str, list[object]]:
    first, end = date.fromisoformat(start), date.fromisoformat(until)
    days = [(first + timedelta(n)).isoformat() for n in range((end - first).days)]
    result: dict[str, list[object]] = {day: [] for day in days}
    for record in sandbox.records:
        if record["sessionEndsOn"] in result:
            result[record["sessionEndsOn"]].append(record["id"])
    return {day: sorted(ids) for day, ids in result.items()}


def unlisted(base: Any) -> list[str]:
    found = []
    base.fs.invalidate_cache()
    for directory in base.iterdir():
        if not directory.name.startswith("session_end_on="):
            found.append(directory.name)
            continue
        manifest = read_manifest(base, date.fromisoformat(directory.name.split("=", 1)[1]))
        listed = {entry["name"] for entry in (manifest or {"files": []})["files"]}
        found += [
            f"{directory.name}/{path.name}"
            for path in directory.iterdir()
            if path.name not in listed | {MANIFEST_NAME}
        ]
    return found


def race(sandbox: SandboxServer, output: str, tmp_path: Path, trial: int, max_pause: float) -> None:
    go = tmp_path / f"go-{trial}"
    children = []
    for number in range(2):
        spec = {
            "url": sandbox.url,
            "api_key": SANDBOX_KEY,
            "output": output,
            "windows": WINDOWS if number == 0 else WINDOWS[::-1],
            "seed": trial * 10 + number,
            "max_pause": max_pause,
            "go": str(go),
            "ready": str(tmp_path / f"ready-{trial}-{number}"),
            "lease": 30,
        }
        log = open(tmp_path / f"child-{trial}-{number}.log", "wb")  # noqa: SIM115
        children.append(
            (
                subprocess.Popen(
                    [sys.executable, str(RACE_CHILD), json.dumps(spec)],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=os.environ.copy(),
                ),
                log,
            )
        )
    # Both children import Airflow first (seconds); the start file releases them together.
    ready = time.monotonic() + 60
    while not all((tmp_path / f"ready-{trial}-{n}").exists() for n in range(2)):
        assert time.monotonic() < ready, "the children never got ready"
        assert all(child.poll() is None for child, _ in children), "a child died early"
        time.sleep(0.05)
    go.touch()
    for child, log in children:
        out, _ = child.communicate(timeout=180)
        log.close()
        assert child.returncode == 0, Path(log.name).read_text()[-3000:]
        runs = [line for line in out.decode().splitlines() if line.startswith('{"window"')]
        assert len(runs) == len(WINDOWS)


@pytest.mark.slow
@pytest.mark.parametrize("store", ["file", "s3"])
def test_racing_runs_on_overlapping_windows_never_break_a_partition(
    sandbox: SandboxServer, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    if store == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        url = f"s3://aws_local@{bucket}/lucca/realized_trainings"
    else:
        url = f"file://{tmp_path / 'lake'}"
    base = ObjectStoragePath(url)
    expected = truth_days(sandbox, "2025-04-30", "2025-05-10")
    assert sum(map(len, expected.values())) > 40
    for trial in range(TRIALS):
        # Local runs take tens of milliseconds: shorter pauses to make them overlap as often.
        race(sandbox, url, tmp_path, trial, 0.2 if store == "s3" else 0.03)
        assert dataset_days(base) == expected, f"trial {trial}"
        assert unlisted(base) == [], f"trial {trial}"


@pytest.mark.slow
def test_a_second_run_waits_for_the_lock_then_fails_clearly_before_any_request(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path}")
    holder = DatasetLock(base, "othertoken12", run_id="manual__x", policy=LockPolicy(), log=LOG)
    holder.acquire()
    try:
        sandbox.reset_stats()
        config = ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
        request = ExtractionRequest(window=DateWindow(date(2025, 5, 1), date(2025, 5, 2)))
        started = time.monotonic()
        with (
            LuccaClient(config) as client,
            pytest.raises(LuccaLockError, match=r"locked by run 'manual__x'.*lock_timeout=1 s"),
        ):
            extract_realized_trainings(
                client, request, base, log=LOG, lock_policy=LockPolicy(timeout=1, poll=0.1)
            )
        assert 1 <= time.monotonic() - started < 5
        assert sandbox.stats()["requests"] == 0
        assert not partition_dir(base, date(2025, 5, 1)).exists()
    finally:
        holder.release()
    assert not (base / LOCK_NAME).exists()


def test_a_run_that_lost_its_lock_stops_before_writing(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run paused past its lease (here: its lock replaced under it) must not commit."""
    base = ObjectStoragePath(f"file://{tmp_path}")
    original = DatasetLock.verify

    def stolen(self: DatasetLock) -> None:
        (base / LOCK_NAME).write_bytes(json.dumps({"token": "thief", "run_id": "other"}).encode())
        original(self)

    monkeypatch.setattr(DatasetLock, "verify", stolen)
    config = ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    request = ExtractionRequest(window=DateWindow(date(2025, 5, 1), date(2025, 5, 8)))
    with LuccaClient(config) as client, pytest.raises(LuccaLockError, match="Lost the dataset"):
        extract_realized_trainings(client, request, base, log=LOG)
    assert [path.name for path in base.iterdir()] == [LOCK_NAME]  # nothing else written
    assert json.loads((base / LOCK_NAME).read_bytes())["token"] == "thief"  # not released
