"""Daily extraction of Lucca realized trainings: extract -> verify -> derive.

One run per day of Europe/Paris, on a data-interval timetable so each run's window is its own day.
Backfill the Paris days 2025-01-01 .. 2025-03-31 (both included) with::

    airflow backfill create --dag-id lucca_realized_trainings_daily \\
        --from-date 2025-01-01T00:00:00+01:00 --to-date 2025-03-31T00:00:00+02:00

(a date without offset is a UTC midnight, after Paris midnight: the range would start a day late).

Each run extracts every tenant of the Variable ``lucca_tenants`` in parallel (one mapped
extract -> verify -> derive per tenant, labelled with its name), or the one account of
``lucca_default`` when the Variable is not set; ``fleet_summary`` fails the run naming the tenants
that failed, the others stay committed (README "Scaling"). Each tenant's requests stay within its
connection's ``requests_per_minute`` across runs and workers when ``[lucca] budget_conn_id``
names a Redis; the ``lucca_api`` pool's slots are how many extracts run at once. ``lookback_days``
re-extracts the previous week each day, because CSV imports add realized trainings with past dates.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag
from lucca_common import CATCHUP, START_DATE, TIMEZONE, retry_delay
from lucca_fleet import fleet


@dag(
    dag_id="lucca_realized_trainings_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=TIMEZONE),
    start_date=pendulum.datetime(START_DATE.year, START_DATE.month, START_DATE.day, tz=TIMEZONE),
    catchup=CATCHUP,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": retry_delay(timedelta(minutes=5))},
    tags=["lucca", "example"],
    doc_md=__doc__,
)
def lucca_realized_trainings_daily() -> None:
    fleet(lookback_days=7)


lucca_realized_trainings_daily_dag = lucca_realized_trainings_daily()
