"""Daily extraction of Lucca realized trainings: extract -> verify -> derive.

One run per day of Europe/Paris, on a data-interval timetable so each run's window is its own day.
Backfill the Paris days 2025-01-01 .. 2025-03-31 (both included) with::

    airflow backfill create --dag-id lucca_realized_trainings_daily \\
        --from-date 2025-01-01T00:00:00+01:00 --to-date 2025-03-31T00:00:00+02:00

(a date without offset is a UTC midnight, after Paris midnight: the range would start a day late).

All three tasks go through the ``lucca_api`` pool (1 slot), shared with the other Lucca DAGs of the
tenant: extractions never share the tenant's 50 requests/min, and no verify or derive reads files
that another run's extract is replacing (backfills run several runs at once). ``lookback_days``
re-extracts the previous week each day, because CSV imports add realized trainings with past dates.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import CronDataIntervalTimetable, dag
from lucca_common import (
    CATCHUP,
    LUCCA_CONN_ID,
    LUCCA_POOL,
    OUTPUT_TARGET,
    REALIZED_TRAININGS,
    START_DATE,
    TIMEZONE,
)
from lucca_training_hours_report import derive
from lucca_verify import verify

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator


@dag(
    dag_id="lucca_realized_trainings_daily",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone=TIMEZONE),
    start_date=pendulum.datetime(START_DATE.year, START_DATE.month, START_DATE.day, tz=TIMEZONE),
    catchup=CATCHUP,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["lucca", "example"],
    doc_md=__doc__,
)
def lucca_realized_trainings_daily() -> None:
    extract = RealizedTrainingsOperator(
        task_id="extract",
        lucca_conn_id=LUCCA_CONN_ID,
        **OUTPUT_TARGET,
        lookback_days=7,
        pool=LUCCA_POOL,
        outlets=[REALIZED_TRAININGS],
    )
    derive(verify(extract.output))


lucca_realized_trainings_daily_dag = lucca_realized_trainings_daily()
