"""The example DAGs' derived report: training hours by employee and month (defines no DAG).

``derive`` writes one CSV a month under ``<output_path>/_reports/training_hours_by_employee_month/``
(``month=YYYY-MM.csv``). It reads the committed partitions through their manifests, or the table
(Delta, Iceberg) at its latest snapshot: the same data gives the same report in every format.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from airflow.sdk import ObjectStoragePath, task
from lucca_common import (
    LUCCA_POOL,
    OUTPUT_PATH,
    TABLE_FORMATS,
    read_table,
    table_commits,
)

from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.realized_trainings import ExtractionSummary
from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN
from airflow_provider_lucca.extraction.storage import StoragePath, write_whole
from airflow_provider_lucca.operators.realized_trainings import storage_url

REPORT_DIR = "_reports/training_hours_by_employee_month"
CENT = Decimal("0.01")
#: What the report needs of a table row; ``_extra`` holds a value that did not fit its column.
TABLE_COLUMNS = ["ownerId", "hasAttended", "durationInHours", "_extra", PARTITION_COLUMN]


# derive reads the files that an extract replaces: in the same one-slot pool as the extracts, no
# read ever overlaps a commit, backfills with several active runs included.
@task(pool=LUCCA_POOL)
def derive(summary: ExtractionSummary) -> list[str]:
    """Training hours per employee and month, for every month the extraction touched.

    A month is recomputed whole from its committed days, so the report of a month stays right when
    a later run (or its lookback) refreshes some of its days.
    """
    table = summary["file_format"] in TABLE_FORMATS
    # A table's summary names the table, not a path: its reports go under LUCCA_OUTPUT_PATH.
    base = ObjectStoragePath(storage_url(OUTPUT_PATH) if table else summary["output_path"])
    months = sorted({date.fromisoformat(day).replace(day=1) for day in summary["partitions"]})
    commits = table_commits() if table else []
    written = []
    for month in months:
        path = base / REPORT_DIR / f"month={month:%Y-%m}.csv"
        write_whole(
            path,
            table_hours_report(month, commits) if table else training_hours_report(base, month),
        )
        written.append(str(path))
    print("Reports:", *written, sep="\n  ")
    return written


def training_hours_report(base: StoragePath, month: date) -> bytes:
    """CSV of one month of a files dataset: the days that have a manifest, and their records."""
    manifests = {day: read_manifest(base, day) for day in month_days(month)}
    committed = {day: manifest for day, manifest in manifests.items() if manifest is not None}

    def records() -> Iterator[dict[str, Any]]:
        for day, manifest in committed.items():
            yield from read_partition(base, day, manifest)

    return report_csv(month, len(committed), records())


def table_hours_report(month: date, commits: list[dict[str, Any]]) -> bytes:
    """CSV of one month of the configured table, at its latest snapshot.

    A table keeps no trace of a day extracted empty; the days extracted are those that the runs
    in its history (``commits``, from :func:`table_commits`) covered, and any day holding rows.
    """
    days = month_days(month)
    rows = read_table(days[0], days[-1], TABLE_COLUMNS)
    covered = set(rows.column(PARTITION_COLUMN).to_pylist())
    for commit in commits:
        if "lucca.window_from" in commit:
            start = date.fromisoformat(commit["lucca.window_from"])
            until = date.fromisoformat(commit["lucca.window_until"])
            covered.update(day for day in days if start <= day < until)
    records = (record_of(row) for row in rows.select(TABLE_COLUMNS[:-1]).to_pylist())
    return report_csv(month, len(covered), records)


def record_of(row: dict[str, Any]) -> dict[str, Any]:
    """A table row as the record it was received as, for the fields the report reads: values
    the typed columns could not hold come back from ``_extra`` as received."""
    extra = row.pop("_extra")
    record = {key: value for key, value in row.items() if value is not None}
    if extra:
        record.update(json.loads(extra))
    return record


def report_csv(month: date, days_extracted: int, records: Iterable[dict[str, Any]]) -> bytes:
    """Realized trainings and attended hours (exact decimals) per employee; a training counts as
    attended unless ``hasAttended`` is false."""
    trainings: dict[int, int] = defaultdict(int)
    hours: dict[int, Decimal] = defaultdict(Decimal)
    for record in records:
        owner = record["ownerId"]
        trainings[owner] += 1
        duration = record.get("durationInHours")
        if record.get("hasAttended") is not False and duration is not None:
            hours[owner] += Decimal(str(duration))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["month", "owner_id", "realized_trainings", "attended_hours", "days_extracted"])
    for owner in sorted(trainings):
        attended = hours[owner].quantize(CENT)
        writer.writerow([f"{month:%Y-%m}", owner, trainings[owner], attended, days_extracted])
    return out.getvalue().encode("utf-8")


def month_days(month: date) -> list[date]:
    days = []
    day = month
    while day.month == month.month:
        days.append(day)
        day += timedelta(days=1)
    return days
