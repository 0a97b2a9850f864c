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
- ``LUCCA_CONN_ID``: the Lucca connection (default ``lucca_default``) of the one account read
  when the Airflow Variable ``lucca_tenants`` (the tenant list, README "Scaling") is not set.
- ``LUCCA_POOL``: the Airflow pool of the extract tasks (default ``lucca_api``): its slots are how
  many extractions run at once. One slot keeps one account's runs in turn when no shared budget
  is configured (``[lucca] budget_conn_id``); with it, give the pool a slot per tenant.
- ``LUCCA_START_DATE`` / ``LUCCA_CATCHUP``: first day and catchup of the daily DAG.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
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
from airflow_provider_lucca.tenants import TENANTS_VARIABLE, parse_tenants, single_account

#: The tables' tenant column (a table of several tenants).
TENANT_COLUMN = "tenant"
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


def retry_delay(default: timedelta) -> timedelta:
    """The delay between a task's retries: ``default``, or ``LUCCA_RETRY_DELAY_SECONDS`` (the
    end-to-end tests' stack retries within seconds what a deployment retries within minutes)."""
    raw = os.environ.get("LUCCA_RETRY_DELAY_SECONDS", "").strip()
    if not raw:
        return default
    if not raw.isdigit():
        raise ValueError(
            f"Invalid LUCCA_RETRY_DELAY_SECONDS={raw!r}: expected a whole number of seconds."
        )
    return timedelta(seconds=int(raw))


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


def tenant_targets(names: list[str] | None = None) -> list[dict[str, Any]]:
    """At run time, the accounts to extract, as ``RealizedTrainingsOperator`` arguments: the
    tenants of the Variable ``lucca_tenants`` (only ``names`` when given), else the one account
    of ``LUCCA_CONN_ID`` (no tenant: the single-account layout).

    Read by a task, not when the DAG is parsed: editing the Variable takes effect at the next
    run, and parsing never touches the metadata database.
    """
    from airflow.sdk import Variable

    raw = Variable.get(TENANTS_VARIABLE, default=None)
    if raw is None:
        if names:
            raise ValueError(
                f"tenants={names!r}, but the Variable {TENANTS_VARIABLE!r} lists no tenant."
            )
        return [single_account(LUCCA_CONN_ID)]
    tenants = parse_tenants(raw)
    if names:
        known = {tenant.name for tenant in tenants}
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(
                f"Unknown tenant(s) {unknown}: the Variable {TENANTS_VARIABLE!r} lists "
                + ", ".join(sorted(known))
                + "."
            )
        tenants = [tenant for tenant in tenants if tenant.name in names]
    return [tenant.operator_kwargs() for tenant in tenants]


def read_table(
    first: date,
    last: date,
    columns: list[str],
    version: int | None = None,
    tenant: str | None = None,
) -> Any:
    """The rows of days ``[first, last]`` of the configured table, as a ``pyarrow.Table``.

    :param version: the Delta version or Iceberg snapshot id to read (time travel), else the
        latest: a run's own commit reads the same whatever committed since.
    :param tenant: only this tenant's rows (a table of several tenants).
    """
    import pyarrow.dataset as ds

    if FILE_FORMAT == "delta":
        import deltalake

        uri, options = delta_location(storage_url(OUTPUT_PATH))
        table = deltalake.DeltaTable(uri, version=version, storage_options=options)
        day = ds.field(PARTITION_COLUMN)
        rows = (day >= first) & (day <= last)
        if tenant is not None:
            rows = rows & (ds.field(TENANT_COLUMN) == tenant)
        return table.to_pyarrow_table(columns=columns, filters=rows)
    from pyiceberg.expressions import And, EqualTo, GreaterThanOrEqual, LessThanOrEqual

    window = And(
        GreaterThanOrEqual(PARTITION_COLUMN, first.isoformat()),
        LessThanOrEqual(PARTITION_COLUMN, last.isoformat()),
    )
    if tenant is not None:
        window = And(window, EqualTo(TENANT_COLUMN, tenant))
    scan = _iceberg_table().scan(
        row_filter=window, selected_fields=tuple(columns), snapshot_id=version
    )
    return scan.to_arrow().select(columns)


def table_commits(tenant: str | None = None) -> list[dict[str, Any]]:
    """The table's history, newest first: each commit's ``version`` (Delta version, Iceberg
    snapshot id) and the run metadata the extract wrote with it (``lucca.*``: window, filters,
    counts, run id). Commits made by others (maintenance) are listed too, without ``lucca.*``.
    Only the history the table still keeps: trimming it (Delta log cleanup, Iceberg snapshot
    expiry) drops the oldest commits. With ``tenant``, only that tenant's runs' commits."""
    commits = _table_history()
    if tenant is None:
        return commits
    return [commit for commit in commits if commit.get("lucca.tenant") == tenant]


def _table_history() -> list[dict[str, Any]]:
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
