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
from typing import Any, TypedDict

from airflow.sdk import ObjectStoragePath, task
from lucca_common import (
    OUTPUT_PATH,
    TABLE_FORMATS,
    read_table,
    table_commits,
)
from lucca_verify import label_task, tenant_label

from airflow_provider_lucca.extraction.commit import Manifest, read_manifest
from airflow_provider_lucca.extraction.reader import PartitionIntegrityError, read_partition
from airflow_provider_lucca.extraction.realized_trainings import ExtractionSummary
from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN
from airflow_provider_lucca.extraction.storage import StoragePath, write_whole
from airflow_provider_lucca.operators.realized_trainings import TENANT_DIR_PREFIX, storage_url

REPORT_DIR = "_reports/training_hours_by_employee_month"
CENT = Decimal("0.01")
#: What the report needs of a table row; ``_extra`` holds a value that did not fit its column.
TABLE_COLUMNS = ["ownerId", "hasAttended", "durationInHours", "_extra", PARTITION_COLUMN]


class DerivedReports(TypedDict):
    """What ``derive`` returns: the tenant (its label) and the report files it wrote."""

    tenant: str
    reports: list[str]


@task(map_index_template="{{ tenant_label }}")
def derive(summary: ExtractionSummary) -> DerivedReports:
    """Training hours per employee and month, for every month the extraction touched.

    A month is recomputed whole from its committed days, so the report of a month stays right when
    a later run (or its lookback) refreshes some of its days (:func:`refresh_month_reports`).
    """
    label = tenant_label(summary)
    label_task(label)
    tenant = summary["tenant"]
    months = sorted({date.fromisoformat(day).replace(day=1) for day in summary["partitions"]})
    written = refresh_month_reports(summary["file_format"], summary["output_path"], tenant, months)
    print("Reports:", *written, sep="\n  ")
    return {"tenant": label, "reports": written}


def refresh_month_reports(
    file_format: str, dataset: str, tenant: str | None, months: Iterable[date]
) -> list[str]:
    """Compute the reports of ``months`` again, each whole from its committed days; return the
    files written. ``dataset`` is the files' dataset (a tenant's ``tenant=<name>/`` directory);
    a table's reports go under ``LUCCA_OUTPUT_PATH`` instead.

    Derives run side by side (other tenants, overlapping runs): after writing a month, the
    month's data is checked to be still what was read, and computed again if not. So the last
    report written of a month is always computed from its latest data: a commit after the check
    is followed by its own refresh, which writes later.
    """
    table = file_format in TABLE_FORMATS
    # A table's summary names the table, not a path: its reports go under LUCCA_OUTPUT_PATH, in
    # _reports/ (for Delta, the table's root, where a name starting with _ is not the table's:
    # its vacuum leaves it), in a tenant=<name>/ directory there for a table of several tenants.
    base = ObjectStoragePath(storage_url(OUTPUT_PATH) if table else dataset)
    reports = base / REPORT_DIR
    if table and tenant is not None:
        reports = reports / f"{TENANT_DIR_PREFIX}{tenant}"
    written = []
    for month in months:
        path = reports / f"month={month:%Y-%m}.csv"
        for _ in range(MONTH_READ_ATTEMPTS):
            if table:
                commits = table_commits(tenant)
                read_from = newest_version(commits)
                report = table_hours_report(month, commits, tenant)
                write_whole(path, report)
                unchanged = newest_version(table_commits(tenant)) == read_from
            else:
                manifests, report = training_hours_report(base, month)
                write_whole(path, report)
                unchanged = month_manifests(base, month) == manifests
            if unchanged:
                break
        else:
            raise RuntimeError(
                f"{path}: the month's data changed after each of {MONTH_READ_ATTEMPTS} reports; "
                "run derive again."
            )
        written.append(str(path))
    return written


#: Reads of a month that commits of other runs may overtake before derive gives up.
MONTH_READ_ATTEMPTS = 5


def newest_version(commits: list[dict[str, Any]]) -> object:
    """The version of the newest commit in a table history (None for an empty one)."""
    return commits[0]["version"] if commits else None


def month_manifests(base: StoragePath, month: date) -> dict[date, Manifest | None]:
    return {day: read_manifest(base, day) for day in month_days(month)}


def training_hours_report(
    base: StoragePath, month: date
) -> tuple[dict[date, Manifest | None], bytes]:
    """CSV of one month of a files dataset: the days that have a manifest, and their records;
    with the manifests it was computed from.

    A run committing days of the month meanwhile replaces their manifests (and removes the files
    it replaced): the month is read again until its manifests were the same before and after.
    """
    for _ in range(MONTH_READ_ATTEMPTS):
        manifests = month_manifests(base, month)
        committed = {day: manifest for day, manifest in manifests.items() if manifest is not None}
        try:
            report = report_csv(month, len(committed), _records(base, committed))
        except PartitionIntegrityError:
            continue  # a file replaced under us; or damage, which the next read shows again
        if manifests == month_manifests(base, month):
            return manifests, report
    raise PartitionIntegrityError(
        f"{base}: month {month:%Y-%m} changed or failed its checksums on each of "
        f"{MONTH_READ_ATTEMPTS} reads; run derive again."
    )


def _records(base: StoragePath, committed: dict[date, Manifest]) -> Iterator[dict[str, Any]]:
    for day, manifest in committed.items():
        yield from read_partition(base, day, manifest)


def table_hours_report(
    month: date, commits: list[dict[str, Any]], tenant: str | None = None
) -> bytes:
    """CSV of one month of the configured table, at its latest snapshot.

    A table keeps no trace of a day extracted empty; the days extracted are those that the runs
    in its history (``commits``, from :func:`table_commits`) covered, and any day holding rows.
    """
    days = month_days(month)
    rows = read_table(days[0], days[-1], TABLE_COLUMNS, tenant=tenant)
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
