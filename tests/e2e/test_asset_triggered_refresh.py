"""A downstream DAG scheduled on the dataset's Asset, on a real scheduler: a run of the daily DAG
commits, its asset event says which months it touched, the scheduler starts
``lucca_training_hours_refresh`` with that event, and the refresh recomputes those months'
reports and no other; an event that touched nothing makes a skipped run.
"""

from __future__ import annotations

import csv
import io
import time
import urllib.error
import urllib.parse
from collections.abc import Callable
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from airflow_stack import AirflowStack

from tests.e2e.test_backfill import REPORT_DIR, expected_report

pytestmark = pytest.mark.e2e

PRODUCER = "lucca_realized_trainings_daily"
REFRESH = "lucca_training_hours_refresh"
TIMEOUT = 300.0
#: The daily DAG runs one run at a time: a run of the stack's own (the latest interval, whose task
#: may wait out its 5-minute retry delay) can hold the one we trigger back.
PRODUCER_TIMEOUT = 900.0
# The run of Paris day 2025-06-02 (lookback 7 days: 2025-05-26 .. 2025-06-02) touches May and June;
# no other test of the session writes those months.
INTERVAL = ("2025-06-01T22:00:00Z", "2025-06-02T22:00:00Z")
TOUCHED = ["2025-05", "2025-06"]
UNTOUCHED = "2025-08"


def wait_for(
    what: str, check: Callable[[], Any], logs: Callable[..., str], timeout: float = TIMEOUT
) -> Any:
    """Poll ``check`` (every 2 s, bounded) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(2)
    pytest.fail(f"{what}: not within {timeout:.0f} s\n{logs('scheduler', lines=80)}", pytrace=False)


def refresh_runs(stack: AirflowStack) -> list[dict[str, Any]]:
    return list(stack.api("GET", f"/api/v2/dags/{REFRESH}/dagRuns?limit=100")["dag_runs"])


def refresh_is_idle(stack: AirflowStack) -> bool:
    """No refresh run pending and no asset event queued for one (earlier tests' runs)."""
    if any(run["state"] not in ("success", "failed") for run in refresh_runs(stack)):
        return False
    try:
        queued = stack.api("GET", f"/api/v2/dags/{REFRESH}/assets/queuedEvents")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:  # nothing queued
            return True
        raise
    return not queued.get("queued_events")


def run_consuming(stack: AirflowStack, event_id: int) -> dict[str, Any] | None:
    """The refresh run the scheduler started with asset event ``event_id``, once it finished."""
    for run in refresh_runs(stack):
        path = f"/api/v2/dags/{REFRESH}/dagRuns/{run['dag_run_id']}/upstreamAssetEvents"
        events = stack.api("GET", path)["asset_events"]
        if event_id in {event["id"] for event in events} and run["state"] in ("success", "failed"):
            return {**run, "events": events}
    return None


def task_of(stack: AirflowStack, run_id: str) -> dict[str, Any]:
    path = f"/api/v2/dags/{REFRESH}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/refresh"
    return dict(stack.api("GET", path))


def returned(stack: AirflowStack, run_id: str) -> Any:
    path = (
        f"/api/v2/dags/{REFRESH}/dagRuns/{urllib.parse.quote(run_id)}/taskInstances/refresh"
        "/xcomEntries/return_value"
    )
    return stack.api("GET", path)["value"]


def report_rows(path: ObjectStoragePath) -> dict[int, tuple[int, Decimal, int]]:
    rows = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    return {
        int(row["owner_id"]): (
            int(row["realized_trainings"]),
            Decimal(row["attended_hours"]),
            int(row["days_extracted"]),
        )
        for row in rows
    }


@pytest.mark.timeout(1800)
def test_a_commit_makes_the_scheduler_refresh_exactly_the_months_it_touched(
    airflow_stack: AirflowStack, stack_logs: Callable[..., str]
) -> None:
    stack = airflow_stack
    wait_for("the refresh DAG parsed", lambda: _dag_exists(stack, REFRESH), stack_logs)
    wait_for("earlier refresh runs done", lambda: refresh_is_idle(stack), stack_logs)
    base = ObjectStoragePath(stack.output_path)
    reports = base / REPORT_DIR
    sentinel = reports / f"month={UNTOUCHED}.csv"
    sentinel.parent.mkdir(parents=True, exist_ok=True)
    sentinel.write_bytes(b"a report no run touched\n")

    start, end = INTERVAL
    run_id = "asset_events__2025-06-02"
    stack.api(
        "POST",
        f"/api/v2/dags/{PRODUCER}/dagRuns",
        {
            "dag_run_id": run_id,
            "logical_date": start,
            "data_interval_start": start,
            "data_interval_end": end,
        },
    )

    def producer_done() -> str | None:
        state = str(stack.api("GET", f"/api/v2/dags/{PRODUCER}/dagRuns/{run_id}")["state"])
        return state if state in ("success", "failed") else None

    state = wait_for("the producer run", producer_done, stack_logs, PRODUCER_TIMEOUT)
    assert state == "success", stack_logs("scheduler")

    # The producer's asset event: what its extract committed, by month.
    events = stack.api(
        "GET", f"/api/v2/assets/events?source_dag_id={PRODUCER}&source_run_id={run_id}"
    )["asset_events"]
    assert [event["source_task_id"] for event in events] == ["tenant.extract"]
    event = events[0]
    extra = event["extra"]
    assert extra["operation"] == "extract"
    assert extra["window"] == {"from": "2025-06-02", "until": "2025-06-03"}
    assert extra["extracted_window"] == {"from": "2025-05-26", "until": "2025-06-03"}
    assert sorted(extra["months"]) == TOUCHED
    assert sum(extra["partitions"].values()) == extra["records"] > 0

    # The scheduler started the refresh with that event alone; it refreshed those two months.
    refresh = wait_for("the refresh run", lambda: run_consuming(stack, event["id"]), stack_logs)
    assert refresh["run_type"] == "asset_triggered"
    assert [consumed["id"] for consumed in refresh["events"]] == [event["id"]]
    assert refresh["state"] == "success", stack_logs("scheduler")
    result = returned(stack, refresh["dag_run_id"])
    assert result["touched"] == [{"tenant": None, "months": TOUCHED}]
    assert result["reports"] == [str(reports / f"month={month}.csv") for month in TOUCHED]
    for month in TOUCHED:
        first = date.fromisoformat(f"{month}-01")
        assert report_rows(reports / f"month={month}.csv") == expected_report(base, first)
    assert sentinel.read_bytes() == b"a report no run touched\n"  # not another month


@pytest.mark.timeout(600)
def test_an_event_that_touched_nothing_makes_a_skipped_refresh(
    airflow_stack: AirflowStack, stack_logs: Callable[..., str]
) -> None:
    """As a reconciliation that found no change: its event lists no day."""
    stack = airflow_stack
    wait_for("the refresh DAG parsed", lambda: _dag_exists(stack, REFRESH), stack_logs)
    wait_for("earlier refresh runs done", lambda: refresh_is_idle(stack), stack_logs)
    asset = stack.api("GET", "/api/v2/assets?name_pattern=lucca_realized_trainings")["assets"]
    assert len(asset) == 1, asset
    nothing = {
        "operation": "reconcile",
        "tenant": None,
        "file_format": "jsonl",
        "changed_days": [],
        "re_extracted": [],
        "days": 0,
        "partitions": {},
        "months": {},
        "records": 0,
    }
    event = stack.api(
        "POST", "/api/v2/assets/events", {"asset_id": asset[0]["id"], "extra": nothing}
    )
    refresh = wait_for("the refresh run", lambda: run_consuming(stack, event["id"]), stack_logs)
    assert task_of(stack, refresh["dag_run_id"])["state"] == "skipped"


def _dag_exists(stack: AirflowStack, dag_id: str) -> bool:
    try:
        stack.api("GET", f"/api/v2/dags/{dag_id}")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return False
        raise
    return True
