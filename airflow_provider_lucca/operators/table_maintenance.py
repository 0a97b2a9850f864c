"""RealizedTrainingsTableMaintenanceOperator: compaction and cleanup of the Delta or Iceberg table
(maintenance)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.operators.realized_trainings import refuse_other_layout, storage_url
from airflow_provider_lucca.operators.table_sinks import (
    DEFAULT_ICEBERG_CONN_ID,
    delta_sink,
    iceberg_sink,
    validate_table_identifier,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_lucca.extraction.sinks.delta import DeltaSink
    from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink

#: The formats whose output is a table; files with manifests have the sweep instead.
TABLE_FORMATS = ("delta", "iceberg")
DEFAULT_RETENTION_DAYS = 7
#: Ten years: a longer retention is a typo, and would reach before the dates Python handles.
MAX_RETENTION_DAYS = 3650


class TableMaintenanceSummary(TypedDict):
    """What a maintenance run returns (its XCom): the table, the retention, and the sink's
    counts (files compacted, files and bytes deleted...; see ``DeltaSink.maintain`` and
    ``IcebergSink.maintain``)."""

    table: str
    file_format: str
    retention_days: int
    counts: dict[str, int]


class RealizedTrainingsTableMaintenanceOperator(BaseOperator):
    """Compact the table and delete what it no longer uses, keeping ``retention_days`` of time
    travel.

    Every run writes a small file for each day of its window (lookback included); the files it
    replaces, and those of a killed run, stay in storage until deleted. Delta: ``optimize``, then
    ``vacuum``, a checkpoint and log cleanup; Iceberg: compaction, snapshot expiry and
    orphan-file removal. A run committing meanwhile is safe: compaction starts again on the new
    version, and files younger than an hour are never taken for a killed run's. A table that does
    not exist yet (no run committed) is not an error: nothing is done.

    :param file_format: ``"delta"`` or ``"iceberg"``, as given to ``RealizedTrainingsOperator``
        (the files formats are maintained by ``RealizedTrainingsSweepOperator``).
    :param output_path: the Delta table's root, as given to ``RealizedTrainingsOperator``.
        (templated)
    :param iceberg_table: ``namespace.table`` in the Iceberg catalog. (templated)
    :param iceberg_conn_id: the connection describing the Iceberg catalog.
    :param retention_days: days of time travel kept: what the table stopped using longer ago is
        deleted. 0 keeps only the latest version.
    """

    template_fields: Sequence[str] = ("output_path", "iceberg_table")
    ui_color = "#f0e6d5"

    def __init__(
        self,
        *,
        file_format: str,
        output_path: str | None = None,
        iceberg_table: str | None = None,
        iceberg_conn_id: str = DEFAULT_ICEBERG_CONN_ID,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        **kwargs: Any,
    ) -> None:
        # Checked when the DAG is parsed: what is not templated now, the rest after rendering.
        if file_format not in TABLE_FORMATS:
            raise LuccaConfigError(
                f"Invalid file_format={file_format!r}: expected 'delta' or 'iceberg' (files "
                "written as 'jsonl' or 'parquet' are maintained by RealizedTrainingsSweepOperator)."
            )
        if (
            isinstance(retention_days, bool)
            or not isinstance(retention_days, int)
            or not 0 <= retention_days <= MAX_RETENTION_DAYS
        ):
            raise LuccaConfigError(
                f"Invalid retention_days={retention_days!r}: expected a whole number of days "
                f"from 0 to {MAX_RETENTION_DAYS} (the time travel the table keeps)."
            )
        self._check_target(file_format, output_path, iceberg_table, rendered=False)
        super().__init__(**kwargs)
        self.file_format = file_format
        self.output_path = output_path
        self.iceberg_table = iceberg_table
        self.iceberg_conn_id = iceberg_conn_id
        self.retention_days = retention_days

    @staticmethod
    def _check_target(
        file_format: str, output_path: str | None, iceberg_table: str | None, *, rendered: bool
    ) -> None:
        def ready(value: object) -> bool:
            return rendered or not (isinstance(value, str) and ("{{" in value or "{%" in value))

        if file_format == "iceberg":
            if output_path is not None:
                raise LuccaConfigError(
                    "output_path is not used with file_format='iceberg': the table's location "
                    "comes from its catalog (iceberg_conn_id); remove output_path."
                )
            if ready(iceberg_table):
                validate_table_identifier(iceberg_table)
            return
        if iceberg_table is not None:
            raise LuccaConfigError(
                "iceberg_table is only used with file_format='iceberg' (not 'delta')."
            )
        if ready(output_path):
            storage_url(output_path)

    def execute(self, context: Context) -> TableMaintenanceSummary:
        self._check_target(
            self.file_format, self.output_path, self.iceberg_table, rendered=True
        )  # rendered by now
        if self.file_format == "iceberg":
            assert self.iceberg_table is not None  # _check_target
            sink: DeltaSink | IcebergSink = iceberg_sink(
                self.iceberg_conn_id, self.iceberg_table.strip()
            )
        else:
            url = storage_url(self.output_path)
            # A files dataset (or anything else) at that root is a mistake, not a table to come.
            refuse_other_layout(ObjectStoragePath(url), "delta")
            sink = delta_sink(url)
        retention = timedelta(days=self.retention_days)
        self.log.info(
            "Maintaining %s, keeping %d days of time travel", sink.describe(), self.retention_days
        )
        counts: dict[str, int] = sink.maintain(retention=retention, log=self.log)
        self.log.info(
            "Maintained %s: %s",
            sink.describe(),
            ", ".join(f"{name} {value}" for name, value in counts.items()),
        )
        return {
            "table": sink.describe(),
            "file_format": self.file_format,
            "retention_days": self.retention_days,
            "counts": counts,
        }
