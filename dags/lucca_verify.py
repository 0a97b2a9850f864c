"""The example DAGs' check of an extraction: read what it committed back (defines no DAG)."""

from __future__ import annotations

from datetime import date

from airflow.sdk import ObjectStoragePath, task
from lucca_common import LUCCA_POOL

from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.reader import verify_partition
from airflow_provider_lucca.extraction.realized_trainings import ExtractionSummary


# verify reads the files that an extract replaces: in the same one-slot pool as the extracts, no
# read ever overlaps a commit, backfills with several active runs included.
@task(pool=LUCCA_POOL)
def verify(summary: ExtractionSummary) -> ExtractionSummary:
    """Read every partition the extraction committed back through its manifest and checksums.

    A day that a later run has committed since (its lookback overlaps this window) is checked
    for integrity, but its count is that run's, not this one's.
    """
    base = ObjectStoragePath(summary["output_path"])
    replaced = []
    for text, records in summary["partitions"].items():
        day = date.fromisoformat(text)
        manifest = read_manifest(base, day)
        count = verify_partition(base, day)
        if manifest is not None and manifest["run"]["token"] != summary["run_token"]:
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
