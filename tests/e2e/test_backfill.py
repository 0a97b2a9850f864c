"""`airflow backfill create` on a real scheduler: runs, partitions, reports, pool, date rule.

The range crosses the switch to summer time (Paris, 2025-03-30 is 23 hours long) and a month end,
so a window taken in UTC instead of the DAG's timezone, or a report not recomputed per month,
shows up as a wrong partition.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from airflow.sdk import ObjectStoragePath
from airflow_stack import AirflowStack

from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.reader import read_partition
from lucca_sandbox.data import generate_records

pytestmark = pytest.mark.e2e

DAG_ID = "lucca_realized_trainings_daily"
PARIS = ZoneInfo("Europe/Paris")
LOOKBACK_DAYS = 7  # the daily DAG's lookback_days
REPORT_DIR = "_reports/training_hours_by_employee_month"  # dags/lucca_training_hours_report.py
RUNS_TIMEOUT = 300.0
TERMINAL_FAILED = {"failed", "upstream_failed"}

# Paris days 2025-03-27 .. 2025-04-01: midnight in Paris, with its UTC offset (CET, then CEST).
FIRST_DAY, LAST_DAY = date(2025, 3, 27), date(2025, 4, 1)
FROM_DATE, TO_DATE = "2025-03-27T00:00:00+01:00", "2025-04-01T00:00:00+02:00"


@cache
def sandbox_records() -> tuple[dict[str, Any], ...]:
    """The stack's sandbox data: CLI defaults seed 42 and the stack's record count and range."""
    return tuple(generate_records(42, 20000, date(2024, 1, 1), date(2026, 12, 31)))


def truth(day: date) -> list[dict[str, Any]]:
    """The sandbox's records of ``day`` as a reader sees them (JSON floats as exact Decimal)."""
    return sorted(
        (
            json.loads(json.dumps(record), parse_float=Decimal)
            for record in sandbox_records()
            if record["sessionEndsOn"] == day.isoformat()
        ),
        key=lambda record: record["id"],
    )


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def paris_day(timestamp: str) -> date:
    return instant(timestamp).astimezone(PARIS).date()


def backfill_runs(stack: AirflowStack) -> list[dict[str, Any]]:
    runs = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]
    return sorted(
        (run for run in runs if run["run_type"] == "backfill"),
        key=lambda run: run["data_interval_start"],
    )


def wait_for_runs(
    stack: AirflowStack, expected: int, logs: Callable[..., str]
) -> list[dict[str, Any]]:
    """Bounded poll until ``expected`` backfill runs succeeded; fail early on a failed run."""
    deadline = time.monotonic() + RUNS_TIMEOUT
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = backfill_runs(stack)
        states = [run["state"] for run in runs]
        if any(state in TERMINAL_FAILED for state in states) or (
            len(runs) == expected and all(state == "success" for state in states)
        ):
            break
        time.sleep(3)
    summary = "\n".join(
        f"  {run['dag_run_id']}: {run['state']} "
        f"[{run['data_interval_start']}, {run['data_interval_end']})"
        for run in runs
    )
    if len(runs) != expected or any(run["state"] != "success" for run in runs):
        pytest.fail(
            f"Backfill not successful after at most {RUNS_TIMEOUT:.0f} s; expected {expected} "
            f"successful runs, got:\n{summary}\n{logs('scheduler', lines=80)}",
            pytrace=False,
        )
    return runs


def expected_report(base: Any, month: date) -> dict[int, tuple[int, Decimal, int]]:
    """owner -> (realized trainings, attended hours, days extracted) over the month's committed
    days, computed from the sandbox's data rather than from the files."""
    committed = [
        day
        for day in days(month, (month + timedelta(days=32)).replace(day=1) - timedelta(days=1))
        if read_manifest(base, day) is not None
    ]
    trainings: dict[int, int] = defaultdict(int)
    hours: dict[int, Decimal] = defaultdict(Decimal)
    for day in committed:
        for record in truth(day):
            trainings[record["ownerId"]] += 1
            if record["hasAttended"]:
                hours[record["ownerId"]] += Decimal(str(record["durationInHours"]))
    return {owner: (trainings[owner], hours[owner], len(committed)) for owner in trainings}


@pytest.mark.timeout(900)
def test_backfill_runs_on_the_scheduler_and_commits_exact_partitions(
    airflow_stack: AirflowStack, stack_logs: Callable[..., str]
) -> None:
    stack = airflow_stack
    wanted = days(FIRST_DAY, LAST_DAY)
    stack.cli(
        *("backfill", "create", "--dag-id", DAG_ID),
        *("--from-date", FROM_DATE, "--to-date", TO_DATE),
    )
    runs = wait_for_runs(stack, len(wanted), stack_logs)

    # One run per Paris day, each interval exactly that day (23 hours for 2025-03-30).
    assert [paris_day(run["data_interval_start"]) for run in runs] == wanted
    assert [paris_day(run["data_interval_end"]) for run in runs] == [
        day + timedelta(days=1) for day in wanted
    ]

    # Without a tenant list, each run maps its one account (lucca_default); the extracts went
    # through the one-slot lucca_api pool, so no two of them overlapped: no extraction shared
    # the tenant's budget with another.
    intervals = []
    for run in runs:
        path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}/taskInstances"
        tasks = {
            (ti["task_id"], ti["map_index"]): ti for ti in stack.api("GET", path)["task_instances"]
        }
        assert {key: ti["state"] for key, ti in tasks.items()} == {
            ("tenants", -1): "success",
            ("tenant.extract", 0): "success",
            ("tenant.verify", 0): "success",
            ("tenant.derive", 0): "success",
            ("fleet_summary", -1): "success",
        }, run["dag_run_id"]
        extract = tasks[("tenant.extract", 0)]
        assert extract["pool"] == "lucca_api", extract
        assert extract["rendered_map_index"] == "lucca_default", extract
        intervals.append((instant(extract["start_date"]), instant(extract["end_date"])))
    intervals.sort()
    for (_, previous_end), (next_start, _) in itertools.pairwise(intervals):
        assert previous_end <= next_start, f"Lucca extracts overlapped: {intervals}"

    # Each day of the range and of the first run's lookback is committed with exactly the
    # sandbox's records of that day; no other day of those months was written (the asset-event
    # test of the same stack writes 2025-05/06, the stack's own latest-interval run this year).
    base = ObjectStoragePath(stack.output_path)
    committed = days(FIRST_DAY - timedelta(days=LOOKBACK_DAYS), LAST_DAY)
    for day in committed:
        manifest = read_manifest(base, day)
        assert manifest is not None, f"{day}: no _manifest.json"
        expected = truth(day)
        assert expected, f"{day}: the sandbox has no record that day; pick another range"
        got = sorted(read_partition(base, day), key=lambda record: record["id"])
        assert manifest["record_count"] == len(expected), day
        assert [r["id"] for r in got] == [r["id"] for r in expected], day
        assert got == expected, day
    written = sorted(
        entry.name
        for entry in base.iterdir()
        if entry.name.startswith(("session_end_on=2025-03-", "session_end_on=2025-04-"))
    )
    assert written == [f"session_end_on={day.isoformat()}" for day in committed]

    # The monthly reports of both months exist and agree with the sandbox's data.
    for month in (date(2025, 3, 1), date(2025, 4, 1)):
        path = base / REPORT_DIR / f"month={month:%Y-%m}.csv"
        assert path.exists(), f"missing report {path}"
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        assert rows, path
        assert list(rows[0]) == [
            "month",
            "owner_id",
            "realized_trainings",
            "attended_hours",
            "days_extracted",
        ]
        got_report = {
            int(row["owner_id"]): (
                int(row["realized_trainings"]),
                Decimal(row["attended_hours"]),
                int(row["days_extracted"]),
            )
            for row in rows
        }
        assert {row["month"] for row in rows} == {f"{month:%Y-%m}"}
        assert got_report == expected_report(base, month), path


def dry_run_days(stack: AirflowStack, from_date: str, to_date: str) -> list[date]:
    """Paris days of the runs ``airflow backfill create --dry-run`` would create."""
    output = stack.cli(
        *("backfill", "create", "--dag-id", DAG_ID, "--dry-run"),
        *("--from-date", from_date, "--to-date", to_date),
    )
    # Rows of the table: "| 2025-03-01 23:00:00+00:00 |  |  |"; the logical date of a run of
    # this timetable is the start of its data interval.
    logical_dates = [
        line.strip("| ").split("|")[0].strip()
        for line in output.splitlines()
        if line.startswith("| 2")
    ]
    assert logical_dates, output
    return [paris_day(value) for value in logical_dates]


@pytest.mark.timeout(600)
def test_backfill_date_rule(airflow_stack: AirflowStack) -> None:
    """The rule the README states: --from-date/--to-date are instants, both inclusive, compared
    with each run's logical date (the Paris midnight starting its day); a value without offset is
    read in [core] default_timezone, UTC here."""
    # Naive dates are UTC midnights: Paris midnight of 03-01 is 02-28T23:00Z, before the start.
    assert dry_run_days(airflow_stack, "2025-03-01", "2025-03-05") == days(
        date(2025, 3, 2), date(2025, 3, 5)
    )
    # Paris midnights with their offset select exactly the Paris days, both ends included.
    assert dry_run_days(
        airflow_stack, "2025-03-01T00:00:00+01:00", "2025-03-05T00:00:00+01:00"
    ) == days(date(2025, 3, 1), date(2025, 3, 5))
