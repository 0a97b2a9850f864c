"""Refresh the monthly training-hours reports of the months that changed, when they change.

Scheduled on the dataset's Asset (``lucca_realized_trainings``): the scheduler starts a run after
the daily, history or reconciliation DAG committed (each extract or reconcile task's asset event),
with every event since the last run. Each event's ``extra`` says what its run changed (README
"Asset events"): the months whose days it rewrote, and for which tenant. This DAG computes
again the report of those months only, from their committed data
(``lucca_training_hours_report.refresh_month_reports``, as ``derive`` does), and is skipped when
the events touched nothing (a reconciliation that found no change).

The same pattern serves any consumer of the dataset: a warehouse load, a dashboard refresh, or a
notification of the days rewritten in old history.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pendulum
from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowSkipException
from lucca_common import OUTPUT_PATH, REALIZED_TRAININGS, TABLE_FORMATS
from lucca_training_hours_report import refresh_month_reports

from airflow_provider_lucca.operators.realized_trainings import TENANT_DIR_PREFIX, storage_url


def touched_months(extras: list[dict[str, Any]]) -> dict[tuple[str | None, str], set[str]]:
    """(tenant, file format) -> the ``YYYY-MM`` months the events' runs wrote days of. An event
    without ``months`` (one not made by a Lucca operator, e.g. created through the REST API)
    says nothing about what changed: it is left out, and named in the log."""
    touched: dict[tuple[str | None, str], set[str]] = {}
    for extra in extras:
        months = extra.get("months")
        if not isinstance(months, dict):
            print("Ignoring an event that does not say what changed:", extra)
            continue
        target = (extra.get("tenant"), str(extra.get("file_format")))
        touched.setdefault(target, set()).update(months)
    return {target: months for target, months in touched.items() if months}


@dag(
    dag_id="lucca_training_hours_refresh",
    schedule=[REALIZED_TRAININGS],
    start_date=pendulum.datetime(2025, 1, 1, tz="Europe/Paris"),
    catchup=False,
    max_active_runs=1,
    tags=["lucca", "example"],
    doc_md=__doc__,
)
def lucca_training_hours_refresh() -> None:
    @task
    def refresh() -> dict[str, Any]:
        """Recompute the reports of the months the triggering events touched; skip if none."""
        events = get_current_context()["triggering_asset_events"][REALIZED_TRAININGS]
        extras = [dict(event.extra or {}) for event in events]
        for event, extra in zip(events, extras, strict=True):
            print(
                f"Event of {event.source_dag_id}.{event.source_task_id} "
                f"({extra.get('operation')}, tenant {extra.get('tenant')}): "
                f"months {sorted(extra.get('months') or {})}"
            )
        touched = touched_months(extras)
        if not touched:
            raise AirflowSkipException(
                f"The {len(events)} events changed no day: no report to refresh."
            )
        reports: list[str] = []
        for (tenant, file_format), months in sorted(touched.items(), key=str):
            dataset = storage_url(OUTPUT_PATH)
            if tenant is not None and file_format not in TABLE_FORMATS:
                dataset = f"{dataset}/{TENANT_DIR_PREFIX}{tenant}"
            firsts = [date.fromisoformat(f"{month}-01") for month in sorted(months)]
            reports += refresh_month_reports(file_format, dataset, tenant, firsts)
        print("Reports refreshed:", *reports, sep="\n  ")
        return {
            "events": len(events),
            "touched": [
                {"tenant": tenant, "months": sorted(months)}
                for (tenant, _), months in sorted(touched.items(), key=str)
            ],
            "reports": reports,
        }

    refresh()


lucca_training_hours_refresh_dag = lucca_training_hours_refresh()
