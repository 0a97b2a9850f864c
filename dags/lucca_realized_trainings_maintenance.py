"""Weekly maintenance of the realized-trainings dataset: sweep files no manifest lists.

A run that fails removes the part files it uploaded; a run that is killed (SIGKILL, a lost worker)
cannot, and its parts stay under the prefix until a later run commits the same days. Readers that
follow manifests never see them, but engines that list files (Athena, Trino, DuckDB globs) would.
The sweep deletes unlisted files older than a day, under the dataset lock, so it never races a run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, dag
from lucca_common import LUCCA_POOL, OUTPUT_PATH, TIMEZONE

from airflow_provider_lucca.operators.sweep import RealizedTrainingsSweepOperator


@dag(
    dag_id="lucca_realized_trainings_maintenance",
    schedule=CronTriggerTimetable("0 4 * * 0", timezone=TIMEZONE),  # Sundays 04:00
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    tags=["lucca", "example"],
    doc_md=__doc__,
)
def lucca_realized_trainings_maintenance() -> None:
    RealizedTrainingsSweepOperator(
        task_id="sweep_unlisted_files",
        output_path=OUTPUT_PATH,
        older_than_hours=24,
        pool=LUCCA_POOL,
    )


lucca_realized_trainings_maintenance_dag = lucca_realized_trainings_maintenance()
