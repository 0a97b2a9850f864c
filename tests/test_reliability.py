"""Reliability under load and faults, over real HTTP against the Lucca sandbox.

The guarantees: faults the client must ride out do not lose or duplicate a record; faults it
must not ride out fail the task quickly with a message that says what happened, and leave the
committed data byte for byte as it was; parallel runs share one tenant's rate limit; a process
killed at any step of the commit leaves readers on complete data, and the next run heals it.

Datasets are always read back the way readers must read them: through the manifests only.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaClient,
    LuccaError,
    LuccaRateLimitError,
    LuccaRetriesExhaustedError,
    RetryPolicy,
)
from airflow_provider_lucca.extraction.lock import LockPolicy
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from lucca_sandbox import BOUNDS, FaultSchedule, SandboxConfig, SandboxServer
from lucca_sandbox import ratelimit as sandbox_ratelimit
from tests.helpers import SANDBOX_KEY, lucca_conn_json, read_dataset, tree

LOG = logging.getLogger("tests.reliability")
MANIFEST = "_manifest.json"
CRASH_CHILD = Path(__file__).resolve().parent / "crash_child.py"
LEASE = 5.0  # the killed run's lock lease: the re-run waits at most this long


# --------------------------------------------------------------------------- helpers


def fast_client(
    url: str, *, page_size: int = 20, timeout: float = 5.0, **retry: Any
) -> LuccaClient:
    """A client whose backoff is milliseconds (Retry-After is still honoured as sent)."""
    policy = RetryPolicy(
        **{
            "max_attempts": 8,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "rate_limit_min_wait": 0.01,
            "jitter": 0.0,
            **retry,
        }
    )
    config = ClientConfig(
        base_url=url,
        api_key=SANDBOX_KEY,
        page_size=page_size,
        timeout=timeout,
        requests_per_minute=0,
        retry=policy,
    )
    return LuccaClient(config, logger=LOG)


def dataset_at(root: Path) -> ObjectStoragePath:
    return ObjectStoragePath(f"file://{root}")


def extract(
    client: LuccaClient, root: Path, start: str, until: str, **options: Any
) -> dict[str, Any]:
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(start), date.fromisoformat(until))
    )
    return extract_realized_trainings(client, request, dataset_at(root), log=LOG, **options)


def days(start: str, until: str) -> list[str]:
    first, end = date.fromisoformat(start), date.fromisoformat(until)
    return [(first + timedelta(n)).isoformat() for n in range((end - first).days)]


def truth(records: list[dict[str, Any]], start: str, until: str) -> dict[str, list[dict[str, Any]]]:
    """Every day of ``[start, until)`` (empty days included) with its records sorted by id."""
    result: dict[str, list[dict[str, Any]]] = {day: [] for day in days(start, until)}
    for item in records:
        if item["sessionEndsOn"] in result:
            result[item["sessionEndsOn"]].append(item)
    return {day: sorted(items, key=lambda r: r["id"]) for day, items in result.items()}


def unlisted_files(root: Path) -> list[str]:
    """Files a manifest does not list: orphans of a crash, stale parts, temporary files."""
    found: list[str] = []
    for directory in sorted(path for path in root.iterdir() if path.is_dir()):
        manifest_path = directory / MANIFEST
        listed = set()
        if manifest_path.exists():
            listed = {entry["name"] for entry in json.loads(manifest_path.read_bytes())["files"]}
        found += [
            f"{directory.name}/{path.name}"
            for path in directory.iterdir()
            if path.name not in listed | {MANIFEST}
        ]
    found += [path.name for path in root.iterdir() if not path.is_dir()]
    return found


# --------------------------------------------------------------------------- faults ridden out

RIDDEN_OUT = {
    "429 bursts, Retry-After in seconds, as an HTTP-date and absent": FaultSchedule(
        at={1: "429", 2: "429-none", 3: "429-date", 6: "429-none", 7: "429-none", 8: "429-none"}
    ),
    "500/502/503/504/408 bursts": FaultSchedule(
        at={1: "500", 2: "502", 3: "503", 5: "504", 6: "408", 8: "503", 9: "503", 10: "503"}
        | {11: "500", 13: "502", 14: "504", 15: "408"}
    ),
    "dropped connections and answers slower than the read timeout": FaultSchedule(
        at={1: "drop", 2: "slow", 4: "drop", 5: "drop", 7: "slow", 8: "drop", 10: "slow"}
    ),
    "random mix of every transient fault": FaultSchedule(
        rate=0.4,
        kinds=("429-none", "500", "502", "503", "504", "408", "drop", "slow"),
        seed=11,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("schedule", RIDDEN_OUT.values(), ids=list(RIDDEN_OUT))
def test_transient_faults_over_http_lose_and_duplicate_nothing(
    sandbox: SandboxServer, tmp_path: Path, schedule: FaultSchedule
) -> None:
    start, until = "2025-03-01", "2025-04-15"  # about 250 records: 13 pages of 20
    sandbox.configure(faults=schedule, slow_seconds=2.0)
    sandbox.reset_stats()  # fault numbering starts at request 1 of this extraction

    timeout = 0.75 if "slow" in {*schedule.at.values(), *schedule.kinds} else 5.0
    with fast_client(sandbox.url, timeout=timeout) as client:
        summary = extract(client, tmp_path, start, until)

    stats = sandbox.stats()
    # The faults really were played: every kind scheduled, or a good mix of the random ones.
    if schedule.at:
        assert stats["faults_by_kind"] == {
            kind: list(schedule.at.values()).count(kind) for kind in set(schedule.at.values())
        }
    else:
        assert stats["faults"] >= 5, stats
        assert len(stats["faults_by_kind"]) >= 4, stats
    # Each fault cost one retry (a loaded machine may add a timeout when reads are short).
    if "slow" in stats["faults_by_kind"]:
        assert summary["retries"] >= stats["faults"]
    else:
        assert summary["retries"] == stats["faults"]
    assert summary["requests"] == stats["requests"]
    assert summary["duplicates_dropped"] == 0
    assert read_dataset(tmp_path) == truth(sandbox.records, start, until)
    assert unlisted_files(tmp_path) == []


# --------------------------------------------------------------------------- faults that must fail


def operator(output: Path, conn_id: str, start: str, until: str) -> RealizedTrainingsOperator:
    return RealizedTrainingsOperator(
        task_id=f"extract_{conn_id}",
        lucca_conn_id=conn_id,
        output_path=f"file://{output}",
        session_end_from=start,
        session_end_until=until,
    )


@pytest.mark.parametrize(
    ("kind", "error", "fragments", "bound"),
    [
        (
            "429-long",
            LuccaRateLimitError,
            ["HTTP 429", "attempt 1", "retry after 3600 s", "cap of 120 s"],
            3.0,
        ),
        pytest.param(
            "503",
            LuccaRetriesExhaustedError,
            ["HTTP 503", "after 3 attempts"],
            10.0,
            marks=pytest.mark.slow,
        ),
    ],
    ids=["Retry-After beyond the cap", "503 outlasting the retry budget"],
)
def test_task_fails_fast_saying_what_happened_and_keeps_the_committed_window(
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    error: type[LuccaError],
    fragments: list[str],
    bound: float,
) -> None:
    """The task (the operator, its hook and the connection's retry settings) fails within a
    bounded time; the window committed by the previous run is byte-identical afterwards."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_LUCCA_FAULTY", lucca_conn_json(sandbox.url, page_size=20, max_retries=2)
    )
    start, until = "2025-05-01", "2025-06-01"
    operator(tmp_path, "lucca_faulty", start, until).execute({"run_id": "clean"})
    before = tree(tmp_path)
    assert read_dataset(tmp_path) == truth(sandbox.records, start, until)

    # New data in the window, then a fault on every request after the first page.
    template = next(r for r in sandbox.records if r["sessionEndsOn"] == "2025-05-10")
    sandbox.configure(
        add_records=[{**template, "id": 7_000_000}],
        faults=FaultSchedule(at=dict.fromkeys(range(2, 100), kind)),
    )
    sandbox.reset_stats()
    started = time.monotonic()
    with pytest.raises(error) as info:
        operator(tmp_path, "lucca_faulty", start, until).execute({"run_id": "faulty"})
    elapsed = time.monotonic() - started

    message = str(info.value)
    assert REALIZED_TRAININGS_PATH in message
    for fragment in fragments:
        assert fragment in message, message
    assert elapsed < bound, f"took {elapsed:.1f} s"
    assert tree(tmp_path) == before


#: May cut in halves down to its first day: [1, 32) -> [1, 16) -> [1, 8) -> [1, 4) -> [1, 2).
MAY_SPLITS = 4


@pytest.mark.parametrize(
    ("kind", "reason", "windows"),
    [
        ("drop", "ConnectionError", 1),
        # A window that keeps timing out is read in halves, down to its first day, which then
        # fails: an outage costs the attempts of one path down, not of every half.
        pytest.param("slow", "ReadTimeout", 1 + MAY_SPLITS, marks=pytest.mark.slow),
        ("429-none", "HTTP 429", 1),
        ("502", "HTTP 502", 1),
        ("408", "HTTP 408", 1 + MAY_SPLITS),
    ],
)
def test_faults_outlasting_the_attempts_fail_fast_naming_status_path_attempts(
    sandbox: SandboxServer, tmp_path: Path, kind: str, reason: str, windows: int
) -> None:
    start, until = "2025-05-01", "2025-06-01"
    with fast_client(sandbox.url) as client:
        extract(client, tmp_path, start, until)
    before = tree(tmp_path)
    sandbox.configure(faults=FaultSchedule(at=dict.fromkeys(range(3, 100), kind)), slow_seconds=3)
    sandbox.reset_stats()

    started = time.monotonic()
    with (
        fast_client(sandbox.url, timeout=0.5, max_attempts=3) as client,
        pytest.raises(LuccaRetriesExhaustedError) as info,
    ):
        extract(client, tmp_path, start, until)

    assert time.monotonic() - started < 5.0 * windows
    assert info.value.attempts == 3
    assert info.value.path == REALIZED_TRAININGS_PATH
    assert info.value.status == (int(reason[5:]) if reason.startswith("HTTP") else None)
    message = str(info.value)
    assert f"GET {REALIZED_TRAININGS_PATH} failed after 3 attempts" in message
    assert f"last failure: {reason}" in message
    # two good pages, then three attempts of each window
    assert sandbox.stats()["requests"] == 2 + 3 * windows
    assert tree(tmp_path) == before


@pytest.mark.slow
def test_retry_time_budget_bounds_a_run_of_rate_limits(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Many attempts allowed, but every 429 asks for 1 s: the 2 s budget ends it."""
    sandbox.configure(faults=FaultSchedule(at=dict.fromkeys(range(1, 100), "429")))
    started = time.monotonic()
    with (
        fast_client(sandbox.url, max_attempts=50, max_total_seconds=2.0) as client,
        pytest.raises(LuccaRetriesExhaustedError) as info,
    ):
        extract(client, tmp_path, "2025-05-01", "2025-06-01")
    assert time.monotonic() - started < 4.0
    assert "the 2 s time budget" in str(info.value)
    assert "HTTP 429" in str(info.value)
    assert info.value.attempts < 5
    assert not tmp_path.exists() or not list(tmp_path.rglob(MANIFEST))


# --------------------------------------------------------------------------- parallel runs

#: The sandbox's 60 s rate window shrunk to 2 s: time runs 30 times faster for the limiter, so a
#: run of a few seconds sees the same pattern of admissions, 429s and Retry-Afters as minutes do.
RATE_WINDOW = 2.0
RATE_LIMIT = 20  # per window: a tenant limit of 600/min at that scale


@pytest.mark.slow
def test_parallel_runs_under_one_tenant_rate_limit_all_succeed_exactly_once(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four operator runs in threads, each with its own connection and client, two paced at the
    tenant's rate and two unpaced, two writing windows of one dataset and two their own."""
    monkeypatch.setattr(sandbox_ratelimit, "_RATE_WINDOW", RATE_WINDOW)
    sandbox.configure(requests_per_minute=RATE_LIMIT)
    sandbox.reset_stats()
    paced = round(RATE_LIMIT * 60 / RATE_WINDOW)
    runs = [
        ("shared", "2025-01-01", "2025-04-01", paced),
        ("shared", "2025-04-01", "2025-07-01", 0),
        ("own_a", "2025-07-01", "2025-10-01", paced),
        ("own_b", "2025-10-01", "2026-01-01", 0),
    ]
    operators = []
    for number, (name, start, until, rpm) in enumerate(runs):
        conn_id = f"lucca_parallel_{number}"
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            lucca_conn_json(sandbox.url, requests_per_minute=rpm, page_size=50, max_retries=20),
        )
        operators.append(operator(tmp_path / name, conn_id, start, until))

    with ThreadPoolExecutor(max_workers=len(operators)) as pool:
        futures = [
            pool.submit(op.execute, {"run_id": f"parallel_{n}"}) for n, op in enumerate(operators)
        ]
        summaries = [future.result(timeout=120) for future in futures]

    stats = sandbox.stats()
    assert stats["by_status"].get("429", 0) > 0, "the runs never met the tenant's limit"
    assert set(stats["by_status"]) == {"200", "429"}
    assert sum(s["retries"] for s in summaries) == stats["by_status"]["429"]
    assert sum(s["requests"] for s in summaries) == stats["requests"]
    assert read_dataset(tmp_path / "shared") == truth(sandbox.records, "2025-01-01", "2025-07-01")
    assert read_dataset(tmp_path / "own_a") == truth(sandbox.records, "2025-07-01", "2025-10-01")
    assert read_dataset(tmp_path / "own_b") == truth(sandbox.records, "2025-10-01", "2026-01-01")
    for name in ("shared", "own_a", "own_b"):
        assert unlisted_files(tmp_path / name) == []


# --------------------------------------------------------------------------- crashes


def wait_for(marker: Path, child: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if child.poll() is not None:
            pytest.fail(f"the child exited ({child.returncode}) early:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no crash point within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["mid-part", "before-manifest", "mid-manifests", "before-cleanup"]
)
def test_sigkill_during_commit_keeps_readers_on_complete_data_and_the_rerun_heals(
    sandbox: SandboxServer,
    tmp_path: Path,
    point: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The killed run also leaves its dataset lock and its local spool: the re-run waits for the
    lock's lease to run out, takes the lock over, and removes the dead run's spool."""
    start, until = "2025-04-01", "2025-04-08"
    root = tmp_path / "dataset"
    with fast_client(sandbox.url, page_size=100) as client:
        extract(client, root, start, until)
    old = truth(sandbox.records, start, until)
    assert read_dataset(root) == old

    # Late arrivals on every day and a deletion: the next run changes every partition.
    template = sandbox.records[0]
    deleted = old["2025-04-03"][0]["id"]
    sandbox.configure(
        add_records=[
            {**template, "id": 8_000_000 + n, "sessionEndsOn": day}
            for n, day in enumerate(days(start, until))
        ],
        delete_ids=[deleted],
    )
    new = truth(sandbox.records, start, until)
    assert all(new[day] != old[day] for day in new)

    marker, log = tmp_path / "marker", tmp_path / "child.log"
    spool = tmp_path / "tmp"
    spool.mkdir()
    spec = {
        "url": sandbox.url,
        "api_key": SANDBOX_KEY,
        "output": f"file://{root}",
        "start": start,
        "until": until,
        "point": point,
        "marker": str(marker),
        "lease": LEASE,
    }
    with open(log, "wb") as output:
        child = subprocess.Popen(
            [sys.executable, str(CRASH_CHILD), json.dumps(spec)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TMPDIR": str(spool)},
        )
    try:
        wait_for(marker, child, log, timeout=60)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

    seen = read_dataset(root)
    first_day = days(start, until)[0]
    if point in ("mid-part", "before-manifest"):
        assert seen == old
        assert unlisted_files(root), "the crashed run's parts should be on disk, unlisted"
    elif point == "mid-manifests":
        assert seen == {**old, first_day: new[first_day]}
    else:
        assert seen == new
        assert unlisted_files(root), "the previous run's parts should still be on disk"

    assert (root / "_lock.json").exists(), "the killed run should still hold the lock"
    assert next(path.name for path in spool.iterdir()).startswith("lucca-extract-")
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    waited = time.monotonic()
    with fast_client(sandbox.url, page_size=100) as client:
        extract(client, root, start, until, lock_policy=LockPolicy(timeout=60, lease=5, poll=0.1))
    waited = time.monotonic() - waited
    assert "Taking over the dataset lock" in caplog.text
    assert waited < 30
    assert list(spool.iterdir()) == [], "the dead run's spool directory was not removed"
    assert read_dataset(root) == new
    assert unlisted_files(root) == []
    assert sorted(path.name for path in root.iterdir()) == [
        f"session_end_on={day}" for day in days(start, until)
    ]


# --------------------------------------------------------------------------- property


@pytest.fixture(scope="module")
def property_sandbox() -> Any:
    with SandboxServer(SandboxConfig(records=0)) as server:
        yield server


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    size=st.integers(0, 400),
    bounds=st.sampled_from(BOUNDS),
    page_size=st.sampled_from([7, 50, 100]),
    data=st.data(),
)
def test_any_split_into_windows_under_either_bounds_reading_commits_the_truth_once(
    property_sandbox: SandboxServer,
    seed: int,
    size: int,
    bounds: str,
    page_size: int,
    data: st.DataObject,
) -> None:
    first = date(2025, 2, 1) + timedelta(data.draw(st.integers(0, 60), label="offset"))
    span = data.draw(st.integers(2, 45), label="span")
    cuts = sorted(data.draw(st.sets(st.integers(1, span - 1), max_size=6), label="cuts"))
    edges = [first + timedelta(n) for n in (0, *cuts, span)]
    windows = [(a.isoformat(), b.isoformat()) for a, b in itertools.pairwise(edges)]
    order = data.draw(st.permutations(windows), label="order")

    # Random records over a wider range, plus one on each side of every window edge.
    sample = {"ownerId": 1, "training": {"id": 3}, "hasAttended": True, "durationInHours": 0.01}
    edge_records = [
        {**sample, "id": 9_000_000 + n, "sessionEndsOn": day.isoformat()}
        for n, day in enumerate(d + timedelta(shift) for d in edges for shift in (-1, 0))
    ]
    property_sandbox.configure(
        seed=seed,
        records=size,
        start="2025-01-20",
        end="2025-05-31",
        bounds=bounds,
        add_records=edge_records,
    )
    start, until = edges[0].isoformat(), edges[-1].isoformat()
    with (
        tempfile.TemporaryDirectory() as tmp,
        fast_client(property_sandbox.url, page_size=page_size) as client,
    ):
        root = Path(tmp)
        for window_start, window_until in order:
            extract(client, root, window_start, window_until)
        assert read_dataset(root) == truth(property_sandbox.records, start, until)
        assert unlisted_files(root) == []
