"""Settings shared by the example Lucca DAGs, and how their tasks read a table (defines no DAG).

Everything a deployment changes comes from the environment, read once at parse time (no metadata
DB or Variable lookup while parsing):

- ``LUCCA_OUTPUT_PATH``: dataset root (``s3://aws_default@lake/lucca/realized_trainings``...);
  defaults to ``data/lucca/realized_trainings`` in this repository, so DAGs run locally as cloned.
  With ``LUCCA_FILE_FORMAT=delta`` it is the Delta table's root (a path of its own: files and a
  table never share one); with ``iceberg`` only the derived reports go there.
- ``LUCCA_FILE_FORMAT``: ``jsonl`` (default) or ``parquet`` (files with manifests), ``delta`` or
  ``iceberg`` (a table, one atomic commit per run). Any other value fails when the DAGs are
  parsed.
- ``LUCCA_ICEBERG_TABLE``: the Iceberg table, ``namespace.table`` (default
  ``lucca.realized_trainings``), created on first run; only with ``iceberg``.
- ``LUCCA_ICEBERG_CONN_ID``: the connection describing the Iceberg catalog (default
  ``iceberg_default``, README "Tables"); only with ``iceberg``.
- ``LUCCA_CONN_ID``: the Lucca connection (default ``lucca_default``).
- ``LUCCA_POOL``: the Airflow pool that serialises calls to one tenant (default ``lucca_api``).
- ``LUCCA_START_DATE`` / ``LUCCA_CATCHUP``: first day and catchup of the daily DAG.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any

from airflow.sdk import Asset

from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN
from airflow_provider_lucca.operators.realized_trainings import (
    FILE_FORMATS,
    asset_uri,
    storage_url,
)
from airflow_provider_lucca.operators.table_sinks import (
    delta_location,
    iceberg_asset_uri,
    iceberg_sink,
)

#: The formats whose output is a table (one commit per run) rather than files with manifests.
TABLE_FORMATS = ("delta", "iceberg")

DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "data" / "lucca" / "realized_trainings"
).as_uri()
OUTPUT_PATH = os.environ.get("LUCCA_OUTPUT_PATH") or DEFAULT_OUTPUT
FILE_FORMAT = (os.environ.get("LUCCA_FILE_FORMAT") or "jsonl").strip().lower()
if FILE_FORMAT not in FILE_FORMATS:
    # Here rather than in the operator, so the message names the setting the user got wrong.
    raise ValueError(
        f"Invalid LUCCA_FILE_FORMAT={os.environ.get('LUCCA_FILE_FORMAT')!r}: expected one of "
        + ", ".join(FILE_FORMATS)
        + "."
    )
ICEBERG_TABLE = os.environ.get("LUCCA_ICEBERG_TABLE") or "lucca.realized_trainings"
ICEBERG_CONN_ID = os.environ.get("LUCCA_ICEBERG_CONN_ID") or "iceberg_default"
LUCCA_CONN_ID = os.environ.get("LUCCA_CONN_ID", "lucca_default")
LUCCA_POOL = os.environ.get("LUCCA_POOL", "lucca_api")
START_DATE = date.fromisoformat(os.environ.get("LUCCA_START_DATE", "2025-01-01"))
CATCHUP = os.environ.get("LUCCA_CATCHUP", "true").strip().lower() in ("1", "true", "yes")
TIMEZONE = "Europe/Paris"

#: Where the extract task writes: ``RealizedTrainingsOperator(**OUTPUT_TARGET)``. An Iceberg table
#: takes its location from its catalog, so the operator gets no ``output_path`` then.
OUTPUT_TARGET: dict[str, str] = (
    {"file_format": FILE_FORMAT, "iceberg_table": ICEBERG_TABLE, "iceberg_conn_id": ICEBERG_CONN_ID}
    if FILE_FORMAT == "iceberg"
    else {"file_format": FILE_FORMAT, "output_path": OUTPUT_PATH}
)

REALIZED_TRAININGS = Asset(
    name="lucca_realized_trainings",
    uri=(
        iceberg_asset_uri(ICEBERG_CONN_ID, ICEBERG_TABLE)
        if FILE_FORMAT == "iceberg"
        else asset_uri(OUTPUT_PATH)
    ),
)


def read_table(first: date, last: date, columns: list[str], version: int | None = None) -> Any:
    """The rows of days ``[first, last]`` of the configured table, as a ``pyarrow.Table``.

    :param version: the Delta version or Iceberg snapshot id to read (time travel), else the
        latest: a run's own commit reads the same whatever committed since.
    """
    import pyarrow.dataset as ds

    if FILE_FORMAT == "delta":
        import deltalake

        uri, options = delta_location(storage_url(OUTPUT_PATH))
        table = deltalake.DeltaTable(uri, version=version, storage_options=options)
        day = ds.field(PARTITION_COLUMN)
        return table.to_pyarrow_table(columns=columns, filters=(day >= first) & (day <= last))
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThanOrEqual

    window = And(
        GreaterThanOrEqual(PARTITION_COLUMN, first.isoformat()),
        LessThanOrEqual(PARTITION_COLUMN, last.isoformat()),
    )
    scan = _iceberg_table().scan(
        row_filter=window, selected_fields=tuple(columns), snapshot_id=version
    )
    return scan.to_arrow().select(columns)


def table_commits() -> list[dict[str, Any]]:
    """The table's history, newest first: each commit's ``version`` (Delta version, Iceberg
    snapshot id) and the run metadata the extract wrote with it (``lucca.*``: window, filters,
    counts, run id). Commits made by others (maintenance) are listed too, without ``lucca.*``.
    Only the history the table still keeps: trimming it (Delta log cleanup, Iceberg snapshot
    expiry) drops the oldest commits."""
    if FILE_FORMAT == "delta":
        import deltalake

        uri, options = delta_location(storage_url(OUTPUT_PATH))
        history: list[dict[str, Any]] = deltalake.DeltaTable(uri, storage_options=options).history()
        return history
    snapshots = sorted(
        _iceberg_table().snapshots(),
        key=lambda snapshot: (snapshot.timestamp_ms, snapshot.sequence_number or 0),
        reverse=True,
    )
    return [
        {
            **snapshot.summary.additional_properties,
            "version": snapshot.snapshot_id,
            "timestamp": snapshot.timestamp_ms,
            "operation": snapshot.summary.operation.value,
        }
        for snapshot in snapshots
    ]


def _iceberg_table() -> Any:
    table = iceberg_sink(ICEBERG_CONN_ID, ICEBERG_TABLE).load_table()
    if table is None:
        raise LookupError(
            f"No Iceberg table {ICEBERG_TABLE} in the catalog of connection {ICEBERG_CONN_ID!r}."
        )
    return table
