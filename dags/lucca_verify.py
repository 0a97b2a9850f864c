"""The example DAGs' check of an extraction: read what it committed back (defines no DAG)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import date
from typing import Any

from airflow.sdk import ObjectStoragePath, get_current_context, task
from lucca_common import LUCCA_CONN_ID, TABLE_FORMATS, read_table, table_commits

from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.reader import PartitionIntegrityError, verify_partition
from airflow_provider_lucca.extraction.realized_trainings import ExtractionSummary
from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN


def tenant_label(summary: Mapping[str, Any]) -> str:
    """The tenant a summary (an extraction's, a reconciliation's...) is about: its name, or the
    connection of a single account."""
    return str(summary.get("tenant") or LUCCA_CONN_ID)


def label_task(label: str) -> None:
    """Name this mapped task in the UI (its ``map_index_template`` reads ``tenant_label``);
    nothing when called outside a task run (a test calling the function)."""
    try:
        context = get_current_context()
    except RuntimeError:
        return
    context["tenant_label"] = label  # type: ignore[typeddict-unknown-key]


# No pool: a run committing the same days meanwhile (a backfill's next run, whose lookback
# overlaps this window) is told apart from a broken partition below.
@task(map_index_template="{{ tenant_label }}")
def verify(summary: ExtractionSummary) -> ExtractionSummary:
    """Read every partition the extraction committed back through its manifest and checksums,
    or the table at the version the extraction committed.

    A day that a later run has committed since (its lookback overlaps this window) is checked
    for integrity, but its count is that run's, not this one's; a day it replaced while this
    task was reading it is not an error either, since the manifest says who wrote the day.
    """
    label_task(tenant_label(summary))
    if summary["file_format"] in TABLE_FORMATS:
        return verify_table(summary)
    base = ObjectStoragePath(summary["output_path"])
    replaced = []
    for text, records in summary["partitions"].items():
        day = date.fromisoformat(text)
        ours = summary["run_token"]
        try:
            count = verify_partition(base, day)
        except PartitionIntegrityError:
            if _written_by(base, day) in (ours, None):  # a manifest is replaced, never removed
                raise
            replaced.append(text)  # files of ours a later commit removed while we read them
            continue
        if _written_by(base, day) != ours:
            replaced.append(text)
        elif count != records:
            raise ValueError(
                f"{day}: {count} records committed, the extraction summary says {records}."
            )
    print(
        f"Verified {len(summary['partitions'])} partitions, checksums match"
        + (f"; {len(replaced)} since re-committed by a later run: {replaced}" if replaced else "")
    )
    return summary


def _written_by(base: ObjectStoragePath, day: date) -> str | None:
    """The run token of the day's current manifest (read after the files: a day whose manifest is
    still ours after we read it was ours while we read it, as commits only move forward)."""
    manifest = read_manifest(base, day)
    return None if manifest is None else manifest["run"]["token"]


def verify_table(summary: ExtractionSummary) -> ExtractionSummary:
    """The table's version ``table_version`` is this run's commit, and holds on each day of the
    extracted window the records the run counted. Read at that version (time travel), a later
    run's commit changes nothing here."""
    version = summary["table_version"]
    if version is None:
        raise ValueError(f"The {summary['file_format']} extraction committed no table version.")
    ours = [commit for commit in table_commits() if commit["version"] == version]
    if not ours or ours[0].get("lucca.run_token") != summary["run_token"]:
        raise ValueError(
            f"Version {version} of the table is not the commit of run {summary['run_token']}."
        )
    first = date.fromisoformat(summary["extracted_window"]["from"])
    last = date.fromisoformat(max(summary["partitions"]))
    rows = read_table(first, last, [PARTITION_COLUMN], version=version, tenant=summary["tenant"])
    counts = Counter(day.isoformat() for day in rows.column(PARTITION_COLUMN).to_pylist())
    wrong = {
        day: (counts.get(day, 0), records)
        for day, records in summary["partitions"].items()
        if counts.get(day, 0) != records
    }
    if wrong:
        raise ValueError(
            f"Version {version}: records on the table vs the extraction summary, by day: {wrong}."
        )
    print(
        f"Verified version {version} of the {summary['file_format']} table: "
        f"{len(summary['partitions'])} days, {sum(counts.values())} records, as committed"
    )
    return summary
