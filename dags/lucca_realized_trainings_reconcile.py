"""Weekly reconciliation of the whole history with Lucca's counts: late imports and deletions.

Lucca's records carry no updated-at: a CSV import adds trainings with past end dates, a deletion
leaves no trace, and the daily DAG's lookback only re-reads the last week. Every Sunday night
this DAG compares every month committed (from the first day to the last) with Lucca's counts, in
two requests a month (three years: 72 requests, about a minute and a half of a tenant's 50
requests/min, against 1,000+ to re-read it), drills into the months that differ and re-extracts
only the days whose counts changed, through the normal commit.

Each tenant of the Variable ``lucca_tenants`` is reconciled in parallel (one mapped task each,
labelled with its name), within its own rate budget (``[lucca] budget_conn_id``) and a slot of the
``lucca_api`` pool; ``fleet_summary`` fails the run naming the tenants that failed. The task's
XCom lists the days that changed, from which counts to which, and the requests it cost.

Counts do not see an edit that changes neither count (a corrected title or duration): the
daily lookback and a periodic full load with the history DAG cover those (README
"Reconciliation").
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronTriggerTimetable, dag
from lucca_common import TIMEZONE, retry_delay
from lucca_fleet import fleet, reconcile_per_tenant


@dag(
    dag_id="lucca_realized_trainings_reconcile",
    schedule=CronTriggerTimetable("0 3 * * 0", timezone=TIMEZONE),
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": retry_delay(timedelta(minutes=10))},
    tags=["lucca", "example"],
    doc_md=__doc__,
)
def lucca_realized_trainings_reconcile() -> None:
    fleet(reconcile_per_tenant)


lucca_realized_trainings_reconcile_dag = lucca_realized_trainings_reconcile()
