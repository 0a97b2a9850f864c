"""RealizedTrainingsSweepOperator: remove part files no manifest lists (maintenance)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_lucca.extraction.lock import (
    DEFAULT_LOCK_LEASE,
    DEFAULT_LOCK_TIMEOUT,
    LockPolicy,
    validate_seconds,
)
from airflow_provider_lucca.extraction.sweep import sweep_unlisted
from airflow_provider_lucca.operators.realized_trainings import (
    refuse_other_layout,
    storage_url,
    tenant_datasets,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

DEFAULT_OLDER_THAN_HOURS = 1.0


class SweepSummary(TypedDict):
    """What a sweep returns (its XCom): how many files it removed, and the first 100 names."""

    output_path: str
    removed: int
    removed_files: list[str]
    kept_recent: int
    partitions: int


class RealizedTrainingsSweepOperator(BaseOperator):
    """Delete files under the dataset's partitions that no manifest lists.

    Runs killed mid-commit leave such files, which engines that list files (Athena, Trino,
    DuckDB globs) would read as rows. The sweep takes the dataset lock, like a run.

    :param output_path: the dataset root, as given to ``RealizedTrainingsOperator``; a root of
        tenants' datasets (``tenant=<name>/``) is swept tenant after tenant. (templated)
    :param older_than_hours: only files older than this are deleted.
    :param lock_timeout: seconds to wait for a run holding the dataset lock.
    :param lock_lease: seconds the lock outlives this task if it is killed.
    """

    template_fields: Sequence[str] = ("output_path",)
    ui_color = "#f0e6d5"

    def __init__(
        self,
        *,
        output_path: str,
        older_than_hours: float = DEFAULT_OLDER_THAN_HOURS,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        lock_lease: float = DEFAULT_LOCK_LEASE,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_path = output_path
        self.older_than_hours = validate_seconds(
            "older_than_hours", older_than_hours, 0, 24 * 365, unit="hours"
        )
        self.lock_policy = LockPolicy(timeout=lock_timeout, lease=lock_lease)
        if not (isinstance(output_path, str) and "{{" in output_path):
            storage_url(output_path)

    def execute(self, context: Context) -> SweepSummary:
        base = ObjectStoragePath(storage_url(self.output_path))
        tenants = tenant_datasets(base)
        # A Delta table's data files are listed by its log, not by manifests: the sweep would
        # delete them all. Each dataset is checked, and swept under its own lock.
        datasets = list(tenants.values()) if tenants else [base]
        summary: SweepSummary = {
            "output_path": str(base),
            "removed": 0,
            "removed_files": [],
            "kept_recent": 0,
            "partitions": 0,
        }
        for dataset in datasets:
            refuse_other_layout(dataset, "jsonl")
            result = sweep_unlisted(
                dataset,
                older_than_seconds=self.older_than_hours * 3600,
                log=self.log,
                lock_policy=self.lock_policy,
            )
            summary["removed"] += len(result.removed)
            summary["removed_files"] = (summary["removed_files"] + result.removed)[:100]
            summary["kept_recent"] += result.kept_recent
            summary["partitions"] += result.partitions
        return summary
