"""Weekly maintenance of the realized-trainings dataset, in the format the extracts write
(``LUCCA_FILE_FORMAT``).

**Files** (``jsonl``, ``parquet``): sweep files no manifest lists. A run that fails removes the part
files it uploaded; a run that is killed (SIGKILL, a lost worker) cannot, and its parts stay under
the prefix until a later run commits the same days. Readers that follow manifests never see them,
but engines that list files (Athena, Trino, DuckDB globs) would. The sweep deletes unlisted files
older than a day, under the dataset lock, so it never races a run.

**Tables** (``delta``, ``iceberg``): readers follow the table, never stray files; but every run
leaves the files of the days it replaced, and a killed run its uncommitted ones. The table
maintenance compacts days held in several files, then deletes what no version of the last
7 days uses (Delta ``optimize`` + ``vacuum``; Iceberg snapshot expiry and orphan-file removal):
time travel reaches back a week.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import CronTriggerTimetable, dag
from lucca_common import (
    FILE_FORMAT,
    LUCCA_POOL,
    OUTPUT_PATH,
    OUTPUT_TARGET,
    TABLE_FORMATS,
    TIMEZONE,
)

from airflow_provider_lucca.operators.sweep import RealizedTrainingsSweepOperator
from airflow_provider_lucca.operators.table_maintenance import (
    RealizedTrainingsTableMaintenanceOperator,
)


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
    if FILE_FORMAT in TABLE_FORMATS:
        # The table the extracts write (its root for delta, its name and catalog for iceberg).
        # No pool: it sends no request to Lucca, and a run committing meanwhile is safe.
        RealizedTrainingsTableMaintenanceOperator(
            task_id="maintain_table", retention_days=7, **OUTPUT_TARGET
        )
    else:
        RealizedTrainingsSweepOperator(
            task_id="sweep_unlisted_files",
            output_path=OUTPUT_PATH,
            older_than_hours=24,
            pool=LUCCA_POOL,
        )


lucca_realized_trainings_maintenance_dag = lucca_realized_trainings_maintenance()
