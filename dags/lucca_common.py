"""Settings and tasks shared by the example Lucca DAGs (this file defines no DAG).

Everything a deployment changes comes from the environment, read once at parse time (no metadata
DB or Variable lookup while parsing):

- ``LUCCA_OUTPUT_PATH``: dataset root (``s3://aws_default@lake/lucca/realized_trainings``...);
  defaults to ``data/lucca/realized_trainings`` in this repository, so DAGs run locally as cloned.
- ``LUCCA_CONN_ID``: the Lucca connection (default ``lucca_default``).
- ``LUCCA_POOL``: the Airflow pool that serialises calls to one tenant (default ``lucca_api``).
- ``LUCCA_START_DATE`` / ``LUCCA_CATCHUP``: first day and catchup of the daily DAG.
"""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, ObjectStoragePath, task

from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.reader import read_partition, verify_partition
from airflow_provider_lucca.extraction.storage import write_whole
from airflow_provider_lucca.operators.realized_trainings import asset_uri

DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "data" / "lucca" / "realized_trainings"
).as_uri()
OUTPUT_PATH = os.environ.get("LUCCA_OUTPUT_PATH") or DEFAULT_OUTPUT
LUCCA_CONN_ID = os.environ.get("LUCCA_CONN_ID", "lucca_default")
LUCCA_POOL = os.environ.get("LUCCA_POOL", "lucca_api")
START_DATE = date.fromisoformat(os.environ.get("LUCCA_START_DATE", "2025-01-01"))
CATCHUP = os.environ.get("LUCCA_CATCHUP", "true").strip().lower() in ("1", "true", "yes")
TIMEZONE = "Europe/Paris"

REALIZED_TRAININGS = Asset(name="lucca_realized_trainings", uri=asset_uri(OUTPUT_PATH))
REPORT_DIR = "_reports/training_hours_by_employee_month"
CENT = Decimal("0.01")


def _days(summary: dict[str, Any]) -> list[date]:
    return [date.fromisoformat(day) for day in summary["partitions"]]


# verify and derive read the files that an extract replaces: in the same one-slot pool as the
# extracts, no read ever overlaps a commit, backfills with several active runs included.
@task(pool=LUCCA_POOL)
def verify(summary: dict[str, Any]) -> dict[str, Any]:
    """Read every partition the extraction committed back through its manifest and checksums.

    A day that a later run has committed since (its lookback overlaps this window) is checked
    for integrity, but its count is that run's, not this one's.
    """
    base = ObjectStoragePath(summary["output_path"])
    replaced = []
    for day in _days(summary):
        manifest = read_manifest(base, day)
        count = verify_partition(base, day)
        if manifest is not None and manifest["run"]["token"] != summary["run_token"]:
            replaced.append(day.isoformat())
        elif count != summary["partitions"][day.isoformat()]:
            raise ValueError(
                f"{day}: {count} records committed, the extraction summary says "
                f"{summary['partitions'][day.isoformat()]}."
            )
    print(
        f"Verified {len(summary['partitions'])} partitions, checksums match"
        + (f"; {len(replaced)} since re-committed by a later run: {replaced}" if replaced else "")
    )
    return summary


@task(pool=LUCCA_POOL)
def derive(summary: dict[str, Any]) -> list[str]:
    """Training hours per employee and month, for every month the extraction touched.

    A month is recomputed whole from its committed days, so the report of a month stays right when
    a later run (or its lookback) refreshes some of its days.
    """
    base = ObjectStoragePath(summary["output_path"])
    months = sorted({day.replace(day=1) for day in _days(summary)})
    written = []
    for month in months:
        path = base / REPORT_DIR / f"month={month:%Y-%m}.csv"
        write_whole(path, training_hours_report(base, month))
        written.append(str(path))
    print("Reports:", *written, sep="\n  ")
    return written


def training_hours_report(base: Any, month: date) -> bytes:
    """CSV of one month: realized trainings and attended hours (exact decimals) per employee."""
    trainings: dict[int, int] = defaultdict(int)
    hours: dict[int, Decimal] = defaultdict(Decimal)
    days_extracted = 0
    day = month
    while day.month == month.month:
        manifest = read_manifest(base, day)
        if manifest is not None:
            days_extracted += 1
            for record in read_partition(base, day, manifest):
                owner = record["ownerId"]
                trainings[owner] += 1
                if record.get("hasAttended", True):
                    hours[owner] += Decimal(str(record["durationInHours"]))
        day += timedelta(days=1)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "owner_id", "realized_trainings", "attended_hours", "days_extracted"])
    for owner in sorted(trainings):
        attended = hours[owner].quantize(CENT)
        writer.writerow([f"{month:%Y-%m}", owner, trainings[owner], attended, days_extracted])
    return out.getvalue().encode("utf-8")
