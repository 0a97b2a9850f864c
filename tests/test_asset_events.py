"""Asset events that say what a run changed: the ``extra`` of the outlet Asset's event.

A real ``dag.test()`` run (a child process with its own AIRFLOW_HOME and metadata DB) extracts a
window, then the sandbox gets late imports, then a reconciliation rewrites their days, then a
second one finds nothing: the events are read back from the metadata DB (``AssetEvent.extra``).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pytest

from airflow_provider_lucca.operators.asset_events import (
    MAX_DAYS_IN_EVENT,
    days_and_months,
    reconcile_event_extra,
)
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, lucca_conn_json, run_child

ROOT = Path(__file__).resolve().parents[1]

DAG_FILE = '''
import json
import os
import urllib.request

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.reconcile import RealizedTrainingsReconcileOperator

OUTPUT = {output!r}

with DAG(
    "lucca_asset_events",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
) as dag:
    extract = RealizedTrainingsOperator(
        task_id="extract",
        output_path=OUTPUT,
        session_end_from="2025-03-08",
        session_end_until="2025-03-15",
        lookback_days=7,
    )

    @task
    def late_imports() -> list:
        """Three CSV imports into days the extract committed, through the sandbox's admin API."""
        request = urllib.request.Request(
            os.environ["SANDBOX_URL"] + "/_sandbox/mutate",
            data=json.dumps(
                {{"seed": 7, "inserts": 3, "from": "2025-03-01", "until": "2025-03-15"}}
            ).encode(),
            headers={{"Authorization": "Bearer " + os.environ["SANDBOX_TOKEN"]}},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())["changes"]

    reconcile = RealizedTrainingsReconcileOperator(task_id="reconcile", output_path=OUTPUT)
    reconcile_again = RealizedTrainingsReconcileOperator(
        task_id="reconcile_again", output_path=OUTPUT
    )
    extract >> late_imports() >> reconcile >> reconcile_again

if __name__ == "__main__":
    from airflow.models.asset import AssetEvent
    from airflow.models.xcom import XComModel
    from airflow.utils import db
    from airflow.utils.session import create_session

    db.initdb()
    run = dag.test()
    with create_session() as session:
        events = [
            {{"task": event.source_task_id, "uri": event.uri, "extra": event.extra}}
            for event in session.query(AssetEvent)
            .filter(AssetEvent.source_run_id == run.run_id)
            .order_by(AssetEvent.id)
        ]
        xcom = {{
            row.task_id: row.value
            for row in session.query(XComModel).filter(
                XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id
            )
        }}
    tasks = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    print("LUCCA-TEST-RESULT " + json.dumps(
        {{"tasks": tasks, "events": events, "xcom": xcom}}, default=str
    ))
'''


@pytest.mark.slow
def test_each_commit_puts_what_it_changed_into_its_asset_event(tmp_path: Path) -> None:
    home, dags, output = tmp_path / "airflow_home", tmp_path / "dags", tmp_path / "lake"
    dags.mkdir()
    dag_file = dags / "lucca_asset_events.py"
    dag_file.write_text(DAG_FILE.format(output=output.as_uri()))
    with SandboxServer(SandboxConfig(records=2000)) as sandbox:
        result, _logs = run_child(
            dag_file,
            home,
            AIRFLOW_CONN_LUCCA_DEFAULT=lucca_conn_json(sandbox.url),
            SANDBOX_URL=sandbox.url,
            SANDBOX_TOKEN=sandbox.admin_token,
        )
    assert set(result["tasks"].values()) == {"success"}, result["tasks"]
    events = result["events"]
    # One event per task with the dataset as outlet, in the order they committed; each on the
    # dataset's Asset (its URI: the output path).
    assert [event["task"] for event in events] == ["extract", "reconcile", "reconcile_again"]
    assert {event["uri"] for event in events} == {output.as_uri()}
    extract, reconcile, again = (event["extra"] for event in events)

    # The extraction's event: its window and the days it replaced (lookback included), each with
    # the records committed on it, as its summary (XCom) says; run token, format, tenant.
    summary = result["xcom"]["extract"]
    assert extract == {
        "operation": "extract",
        "run_token": summary["run_token"],
        "tenant": None,
        "file_format": "jsonl",
        "window": {"from": "2025-03-08", "until": "2025-03-15"},
        "extracted_window": {"from": "2025-03-01", "until": "2025-03-15"},
        "days": 14,
        "partitions": summary["partitions"],
        "months": {"2025-03": {"days": 14, "records": summary["records"]}},
        "records": summary["records"],
        "table_version": None,
    }
    assert len(summary["partitions"]) == 14
    assert summary["records"] > 0
    assert SANDBOX_KEY not in json.dumps(events)

    # The reconciliation's event: exactly the days the late imports landed on, with their
    # records now (one more than the extraction committed for each import that day).
    changes = result["xcom"]["late_imports"]
    imported = Counter(change["sessionEndsOn"] for change in changes)
    assert {change["kind"] for change in changes} == {"insert"}
    assert reconcile["operation"] == "reconcile"
    assert reconcile["changed_days"] == sorted(imported)
    assert reconcile["partitions"] == {
        day: summary["partitions"][day] + count for day, count in imported.items()
    }
    assert reconcile["months"] == {
        "2025-03": {"days": len(imported), "records": sum(reconcile["partitions"].values())}
    }
    assert reconcile["re_extracted"] == result["xcom"]["reconcile"]["re_extracted"]
    assert reconcile["records"] == result["xcom"]["reconcile"]["records_rewritten"]

    # Nothing changed since: the event says so with empty lists (a downstream DAG skips).
    assert again["changed_days"] == []
    assert again["re_extracted"] == []
    assert again["months"] == {}
    assert again["partitions"] == {}
    assert again["records"] == 0


def test_a_large_run_lists_its_months_and_drops_the_day_by_day_detail() -> None:
    """Three years (1,096 days): months only, under 2 KB; a quarter is listed day by day."""
    start = date(2024, 1, 1)
    three_years = {(start + timedelta(days=day)).isoformat(): 18 for day in range(1096)}
    big = days_and_months(three_years)
    assert big["partitions"] is None
    assert big["days"] == 1096
    assert len(big["months"]) == 36
    assert sum(month["records"] for month in big["months"].values()) == 1096 * 18
    assert len(json.dumps(big)) < 2000
    # Day by day it would be ten times that (20,000 records over three years: 19.7 KB).
    assert len(json.dumps(three_years)) > 19_000

    quarter = dict(list(three_years.items())[:MAX_DAYS_IN_EVENT])
    small = days_and_months(quarter)
    assert small["partitions"] == quarter
    assert len(json.dumps(small)) < 2500


def test_a_reconciliation_that_rewrote_half_of_three_years_keeps_its_event_small() -> None:
    """Every other day of three years rewritten (548 days, 548 windows): months only, like an
    extraction's event; a handful of days stays listed day by day and window by window."""
    from airflow_provider_lucca.extraction.reconcile import ReconcileSummary

    def summary(days: list[date]) -> ReconcileSummary:
        return ReconcileSummary(
            output_path="file:///lake",
            file_format="jsonl",
            tenant=None,
            window={"from": "2024-01-01", "until": "2027-01-01"},
            months=36,
            date_bounds=None,
            check_requests=0,
            changed_days=[
                {"day": d.isoformat(), "committed": {}, "lucca": {}, "records_now": 3}  # type: ignore[typeddict-item]
                for d in days
            ],
            re_extracted=[
                {"from": d.isoformat(), "until": (d + timedelta(days=1)).isoformat()} for d in days
            ],
            records_rewritten=3 * len(days),
            table_versions=[],
            requests=0,
            duration_seconds=0.0,
        )

    every_other = [date(2024, 1, 1) + timedelta(days=2 * n) for n in range(548)]
    big = reconcile_event_extra(summary(every_other))
    assert len(json.dumps(big)) < 2500
    assert (big["changed_days"], big["re_extracted"], big["partitions"]) == (None, None, None)
    assert big["days"] == 548
    assert sum(month["days"] for month in big["months"].values()) == 548

    few = every_other[:3]
    small = reconcile_event_extra(summary(few))
    assert small["changed_days"] == [d.isoformat() for d in few]
    assert len(small["re_extracted"]) == 3
