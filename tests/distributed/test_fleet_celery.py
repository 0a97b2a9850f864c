"""Three Lucca tenants on the distributed engine (CeleryExecutor + PostgreSQL + Redis, two
workers): a two-week backfill of the daily DAG over every tenant, runs overlapping, plus a history
load of one tenant at the same time, each tenant within its own rate limit.

What is asserted is what the README's "Scaling" section promises: every partition of every tenant
is that tenant's data, each record once; both workers extracted; no tenant's sandbox answered a
429 or saw more requests in any 60 seconds than its limit, while tenants ran side by side (the
budget is shared through Redis, not per process); and no API key is in the metadata database,
the logs or the outputs.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from distributed_stack import DistributedStack

from lucca_sandbox.data import generate_records
from lucca_sandbox.process import SandboxProcess
from tests.helpers import max_requests_in_any_window, read_dataset

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAILY, HISTORY = "lucca_realized_trainings_daily", "lucca_realized_trainings_history"
#: name -> (seed, records over 2025, requests per minute). Small pages make each run several
#: requests, and the limits are below what the overlapping runs of a tenant would send unpaced
#: together: per-process pacing would exceed them (429s), only the shared budget keeps within.
TENANTS = {"alpha": (11, 2000, 30), "beta": (12, 1800, 40), "gamma": (13, 1500, 50)}
#: The tenants whose overlapping runs ask more than their limit: per-process pacing would exceed
#: it while two of their extracts run at once, the shared budget must not.
BOUND = ("alpha", "beta")
PAGE_SIZE = 10
LOOKBACK_DAYS = 7
# Two weeks of Paris days, 2025-03-10 .. 2025-03-23, both bounds included.
FIRST_DAY, LAST_DAY = date(2025, 3, 10), date(2025, 3, 23)
FROM_DATE, TO_DATE = "2025-03-10T00:00:00+01:00", "2025-03-23T00:00:00+01:00"
# The history load of beta: January and February.
HISTORY_FROM, HISTORY_UNTIL = "2025-01-01", "2025-03-01"
RUNS_TIMEOUT = 600.0


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def sandboxes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SandboxProcess]]:
    """One sandbox process per tenant: its own data, API key and rate limit."""
    logs = tmp_path_factory.mktemp("fleet-sandboxes")
    with contextlib.ExitStack() as stack:
        started = {}
        for name, (seed, records, rpm) in TENANTS.items():
            started[name] = stack.enter_context(
                SandboxProcess(
                    [
                        *("--seed", str(seed), "--records", str(records)),
                        *("--start", "2025-01-01", "--end", "2025-12-31"),
                        *("--requests-per-minute", str(rpm)),
                        *("--api-key", f"key-{name}-{secrets.token_hex(16)}"),
                    ],
                    log_path=str(logs / f"{name}.log"),
                )
            )
        yield started


def api_key(sandbox: SandboxProcess) -> str:
    return sandbox.args[sandbox.args.index("--api-key") + 1]


def fleet_env(sandboxes: dict[str, SandboxProcess]) -> Callable[[DistributedStack], dict[str, str]]:
    def env(stack: DistributedStack) -> dict[str, str]:
        values = {
            "AIRFLOW_VAR_LUCCA_TENANTS": json.dumps(
                [{"name": name, "conn_id": f"lucca_{name}"} for name in TENANTS]
            ),
            # Celery's broker is db 0 of the stack's Redis; the budgets live in db 1.
            "AIRFLOW__LUCCA__BUDGET_CONN_ID": "lucca_budget",
            "AIRFLOW_CONN_LUCCA_BUDGET": stack.redis_url(1),
            "LUCCA_OUTPUT_PATH": (stack.home / "lake").as_uri(),
        }
        for name, sandbox in sandboxes.items():
            values[f"AIRFLOW_CONN_LUCCA_{name.upper()}"] = json.dumps(
                {
                    "conn_type": "lucca",
                    "host": sandbox.url,
                    "password": api_key(sandbox),
                    "extra": {"requests_per_minute": TENANTS[name][2], "page_size": PAGE_SIZE},
                }
            )
        return values

    return env


def truth(name: str, first: date, last: date) -> dict[str, list[int]]:
    """The ids of tenant ``name``'s records by day, from its sandbox's generator."""
    seed, records, _ = TENANTS[name]
    by_day: dict[str, list[int]] = {day.isoformat(): [] for day in days(first, last)}
    for record in generate_records(seed, records, date(2025, 1, 1), date(2025, 12, 31)):
        if record["sessionEndsOn"] in by_day:
            by_day[record["sessionEndsOn"]].append(record["id"])
    return {day: sorted(ids) for day, ids in by_day.items()}


def pg_dump() -> str:
    """The pg_dump of the installed PostgreSQL (the one the stack runs)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))
    assert found, "PostgreSQL's binaries are missing: run scripts/system_packages.sh"
    return str(found[-1])


def spans(log: list[dict[str, Any]]) -> tuple[float, float]:
    times = [entry["at"] for entry in log]
    return min(times), max(times)


def contended(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The stretches of time during which two or more of ``intervals`` ran at once."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    stretches, running, since = [], 0, 0.0
    for at, change in events:  # at equal times an end comes first: touching is not overlapping
        if running < 2 <= running + change:
            since = at
        elif running + change < 2 <= running:
            stretches.append((since, at))
        running += change
    return stretches


@pytest.mark.timeout(1200)
def test_three_tenants_backfill_in_parallel_within_their_budgets(
    start_stack: Callable[..., contextlib.AbstractContextManager[DistributedStack]],
    sandboxes: dict[str, SandboxProcess],
) -> None:
    with start_stack(
        "fleet-airflow",
        env=fleet_env(sandboxes),
        pools={"lucca_api": 8},  # extracts at once: three tenants, several runs each
        concurrency=4,  # task slots of each worker: tasks mostly wait for their request slots
        dags_paused=True,
    ) as stack:
        started = time.monotonic()
        stack.wait_for_dags(DAILY, HISTORY)
        stack.unpause(DAILY, HISTORY)
        backfill = stack.backfill(DAILY, FROM_DATE, TO_DATE, max_active_runs=4)
        history = stack.trigger(
            HISTORY, {"from": HISTORY_FROM, "until": HISTORY_UNTIL, "tenants": ["beta"]}
        )
        failure = ""
        try:
            runs = stack.wait_for_backfill(backfill["id"], timeout=RUNS_TIMEOUT)
            loaded = stack.wait_for_dag_run(HISTORY, history["dag_run_id"], timeout=RUNS_TIMEOUT)
        except (RuntimeError, TimeoutError) as exc:
            failure = str(exc)
        if failure:
            logs = stack.log_tails(40, ("scheduler", *(worker.name for worker in stack.workers)))
            pytest.fail(f"{failure}\n{logs}", pytrace=False)
        print(f"\nFleet backfill and history load done in {time.monotonic() - started:.0f} s")
        assert [run["state"] for run in runs] == ["success"] * 14, runs
        assert loaded["state"] == "success", loaded

        run_ids = [run["dag_run_id"] for run in runs] + [history["dag_run_id"]]
        extracts = stack.sql(
            "SELECT dag_id, run_id, rendered_map_index, hostname,"
            " EXTRACT(EPOCH FROM start_date)::float8, EXTRACT(EPOCH FROM end_date)::float8"
            " FROM task_instance"
            " WHERE task_id = 'tenant.extract' AND state = 'success' AND run_id = ANY(%s)",
            (run_ids,),
        )
        # Everything the metadata database holds (connections come from the environment here,
        # so a key found there would have been written by a task: XCom, logs, rendered fields).
        metadata = subprocess.run(
            [pg_dump(), "--data-only", "--dbname", stack.pg_dsn],
            capture_output=True,
            timeout=120,
            check=False,
        )
        home = stack.home

    # Every tenant's extracts ran in every run; both workers extracted.
    assert len(extracts) == 14 * 3 + 1
    assert {label for _, _, label, *_ in extracts} == set(TENANTS)
    assert {host for _, _, _, host, *_ in extracts} == {worker.hostname for worker in stack.workers}

    # Every partition of every tenant is that tenant's records, each once.
    lake = home / "lake"
    assert sorted(path.name for path in lake.iterdir()) == [f"tenant={name}" for name in TENANTS]
    for name in TENANTS:
        got = read_dataset(lake / f"tenant={name}")
        first = FIRST_DAY - timedelta(days=LOOKBACK_DAYS)
        expected = truth(name, first, LAST_DAY)
        if name == "beta":
            expected |= truth(name, date.fromisoformat(HISTORY_FROM), date(2025, 2, 28))
        # Unpausing the DAG also runs its latest interval (today): days without records.
        assert not any(rows for day, rows in got.items() if not day.startswith("2025-")), name
        ids = {day: [record["id"] for record in rows] for day, rows in got.items()}
        assert {day: got_ids for day, got_ids in ids.items() if day.startswith("2025-")} == expected

    # No 429, and no minute over any tenant's limit, while the tenants ran side by side.
    windows = {}
    for name, sandbox in sandboxes.items():
        log = sandbox.request_log()
        assert log["dropped"] == 0
        entries = log["requests"]
        statuses = {entry["status"] for entry in entries}
        assert statuses == {200}, (name, statuses)
        limit = TENANTS[name][2]
        busiest = max_requests_in_any_window([entry["at"] for entry in entries])
        assert busiest <= limit, (name, busiest, limit)
        windows[name] = spans(entries)
        print(f"{name}: {len(entries)} requests, at most {busiest} in 60 s (limit {limit})")
        if name in BOUND:
            # Two or more of its extracts ran at once for a while (separate processes, often on
            # separate workers), each of which would have sent at the full rate on its own; in
            # those stretches the tenant still got no more than its limit allows.
            times = [entry["at"] for entry in entries]
            stretches = contended([(s, e) for _, _, label, _, s, e in extracts if label == name])
            shared = [at for at in times if any(s <= at <= e for s, e in stretches)]
            seconds = sum(e - s for s, e in stretches)
            print(f"{name}: {seconds:.0f} s with extracts side by side, {len(shared)} requests")
            assert seconds >= 20, (name, stretches)
            assert len(shared) >= 5, (name, stretches, len(shared))
            assert len(shared) <= limit * seconds / 60 + 2 * len(stretches), (name, stretches)
    overlap_start = max(start for start, _ in windows.values())
    overlap_end = min(end for _, end in windows.values())
    assert overlap_end - overlap_start > 30, windows  # all three tenants at once, for a while

    # The keys appear nowhere: metadata database, component and task logs, outputs.
    assert metadata.returncode == 0, metadata.stderr.decode(errors="replace")
    stored = [metadata.stdout]
    for path in (*home.rglob("*"),):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):
                stored.append(path.read_bytes())
    for name, sandbox in sandboxes.items():
        key = api_key(sandbox).encode()
        assert not any(key in blob for blob in stored), name
