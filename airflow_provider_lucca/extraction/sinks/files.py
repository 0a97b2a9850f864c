"""Part files under ``session_end_on=`` days, committed through manifests: jsonl, parquet."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.commit import (
    PARTITION_KEY,
    Manifest,
    ManifestFilters,
    RunFields,
    StagedPartition,
    commit_partitions,
    describe_local_file,
    read_manifest,
)
from airflow_provider_lucca.extraction.formats import PartFormat
from airflow_provider_lucca.extraction.lock import DatasetLock, LockPolicy
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.sinks.base import (
    Committed,
    DayCount,
    DayRecords,
    RunGuard,
    same_filters,
)
from airflow_provider_lucca.extraction.spool import is_attended
from airflow_provider_lucca.extraction.storage import StoragePath, list_fresh

#: Manifests read at once when every day's counts are needed (object stores: one GET each).
MANIFEST_READERS = 8


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
        attended = records.attended.get(day, 0)
        if count == 0:
            os.unlink(local_path)
            return StagedPartition(day, (), duplicates, attended)
        part = describe_local_file(local_path, name, count)
        return StagedPartition(day, (part,), duplicates, attended)

    def committed_counts(self, filters: ManifestFilters) -> dict[date, DayCount]:
        """Every committed day's counts, from its manifest (``attended_count``; a manifest
        written before it existed has its day's files counted instead).

        :raises LuccaConfigError: a day was extracted with other filters than ``filters`` (its
            counts cannot be compared with Lucca's counts under these), or in another format
            than this sink's (a re-extraction would mix formats in the dataset).
        """
        days = []
        try:
            entries = list_fresh(self.root)
        except (FileNotFoundError, NotADirectoryError):  # no root yet (local: the latter)
            return {}
        for entry in entries:
            key, _, value = entry.name.partition("=")
            if key == PARTITION_KEY:
                try:
                    days.append(date.fromisoformat(value))
                except ValueError:
                    continue
        with ThreadPoolExecutor(MANIFEST_READERS) as pool:
            read = pool.map(lambda day: read_manifest(self.root, day), days)
            manifests = dict(zip(days, read, strict=True))
        counts: dict[date, DayCount] = {}
        for day, manifest in sorted(manifests.items()):
            if manifest is None:
                continue  # a directory without manifest: a first run died before its commit
            if manifest.get("file_format", self.file_format) != self.file_format:
                raise LuccaConfigError(
                    f"{self.root} holds {manifest['file_format']} files ({day}), not "
                    f"{self.file_format}: pass file_format={manifest['file_format']!r}, the "
                    "format the dataset was extracted in."
                )
            if not same_filters(manifest["filters"], filters):
                raise LuccaConfigError(
                    f"{self.root} was extracted with filters {manifest['filters']} on {day}, "
                    f"not {filters}: pass the filters the dataset was extracted with "
                    "(owner_ids, has_attended, training_ids)."
                )
            counts[day] = DayCount(manifest["record_count"], self._attended(day, manifest))
        return counts

    def _attended(self, day: date, manifest: Manifest) -> int:
        attended = manifest.get("attended_count")
        if isinstance(attended, int):
            return attended
        return sum(is_attended(record) for record in read_partition(self.root, day, manifest))
