"""The example DAGs' derived report: training hours by employee and month (defines no DAG).

``derive`` writes one CSV a month under ``<output_path>/_reports/training_hours_by_employee_month/``
(``month=YYYY-MM.csv``), read from the committed partitions through their manifests.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from airflow.sdk import ObjectStoragePath, task
from lucca_common import LUCCA_POOL

from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.realized_trainings import ExtractionSummary
from airflow_provider_lucca.extraction.storage import StoragePath, write_whole

REPORT_DIR = "_reports/training_hours_by_employee_month"
CENT = Decimal("0.01")


# derive reads the files that an extract replaces: in the same one-slot pool as the extracts, no
# read ever overlaps a commit, backfills with several active runs included.
@task(pool=LUCCA_POOL)
def derive(summary: ExtractionSummary) -> list[str]:
    """Training hours per employee and month, for every month the extraction touched.

    A month is recomputed whole from its committed days, so the report of a month stays right when
    a later run (or its lookback) refreshes some of its days.
    """
    base = ObjectStoragePath(summary["output_path"])
    months = sorted({date.fromisoformat(day).replace(day=1) for day in summary["partitions"]})
    written = []
    for month in months:
        path = base / REPORT_DIR / f"month={month:%Y-%m}.csv"
        write_whole(path, training_hours_report(base, month))
        written.append(str(path))
    print("Reports:", *written, sep="\n  ")
    return written


def training_hours_report(base: StoragePath, month: date) -> bytes:
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
