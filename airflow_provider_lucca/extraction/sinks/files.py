"""Part files under ``session_end_on=`` days, committed through manifests: jsonl, parquet."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import date

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.commit import (
    RunFields,
    StagedPartition,
    commit_partitions,
    describe_local_file,
)
from airflow_provider_lucca.extraction.formats import PartFormat
from airflow_provider_lucca.extraction.lock import DatasetLock, LockPolicy
from airflow_provider_lucca.extraction.sinks.base import Committed, DayRecords, RunGuard
from airflow_provider_lucca.extraction.storage import StoragePath


class FilesSink:
    """Each day staged as one local part file, then the three-step manifest commit.

    Runs of one dataset take turns under the dataset lock (``<root>/_lock.json``): the manifest
    protocol commits day by day, so two runs writing the same days at once could mix them.
    """

    def __init__(
        self, root: StoragePath, part_format: PartFormat, lock_policy: LockPolicy | None = None
    ) -> None:
        self.root = root
        self.part_format = part_format
        self.file_format = part_format.name
        self.lock_policy = lock_policy or LockPolicy()

    def describe(self) -> str:
        return str(self.root)

    def guard(self, token: str, run_id: str | None, log: Logger) -> DatasetLock:
        return DatasetLock(self.root, token, run_id=run_id, policy=self.lock_policy, log=log)

    def commit(
        self,
        days: Sequence[date],
        records: DayRecords,
        fields: RunFields,
        *,
        workdir: str,
        guard: RunGuard,
        log: Logger,
    ) -> Committed:
        token = fields["run"]["token"]
        staged = [self._stage(day, records, workdir, token) for day in days]
        commit_partitions(self.root, staged, fields, lock=guard, log=log)
        return Committed({partition.day: partition.records for partition in staged})

    def _stage(self, day: date, records: DayRecords, workdir: str, token: str) -> StagedPartition:
        before = records.duplicates
        name = f"part-00000-{token}{self.part_format.extension}"
        local_path = os.path.join(workdir, f"{day.isoformat()}-{name}")
        count = self.part_format.write(records.batches(day), local_path)
        duplicates = records.duplicates - before
        if count == 0:
            os.unlink(local_path)
            return StagedPartition(day, (), duplicates)
        return StagedPartition(day, (describe_local_file(local_path, name, count),), duplicates)
