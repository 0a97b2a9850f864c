"""The contract between the extraction and an output sink."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import date
from typing import NamedTuple, Protocol, runtime_checkable

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.commit import (
    LockGuard,
    ManifestFilters,
    NoGuard,
    RunFields,
)
from airflow_provider_lucca.extraction.spool import ATTENDED, DaySpooler

#: What a run holds while it extracts, checked between requests and before every write: the
#: files sink's dataset lock; a table sink's :class:`NoGuard` (the table's commit settles
#: concurrent runs).
RunGuard = LockGuard

__all__ = ["Committed", "DayCount", "DayRecords", "NoGuard", "OutputSink", "RunGuard"]


class DayCount(NamedTuple):
    """A day's records, and how many of them are attended: the two counts Lucca gives without
    reading records (``fields.root=count``, with and without ``hasAttended=true``)."""

    records: int
    attended: int

    def __add__(self, other: object) -> DayCount:
        if not isinstance(other, DayCount):
            return NotImplemented
        return DayCount(self.records + other.records, self.attended + other.attended)

    def __sub__(self, other: DayCount) -> DayCount:
        return DayCount(self.records - other.records, self.attended - other.attended)


NO_RECORDS = DayCount(0, 0)


@dataclass
class DayRecords:
    """The consistent read's records, day by day, each id once: what every sink stores.

    ``exclude`` holds, per day, the ids of moved records to leave out (kept on the day they were
    served on last); ``duplicates`` counts the repeats dropped so far (an id served twice on one
    day is stored once); ``attended`` the attended records of each day streamed so far.
    """

    spooler: DaySpooler
    exclude: dict[date, set[bytes]] = field(default_factory=dict)
    duplicates: int = 0
    attended: dict[date, int] = field(default_factory=dict)

    def batches(self, day: date) -> Iterator[list[bytes]]:
        """The day's records as batches of JSON texts (the spool's ~1 MB slices), deduplicated
        on the id prefix of each spool line without parsing JSON."""
        seen: set[bytes] = set(self.exclude.get(day, ()))
        attended = 0
        for lines in self.spooler.read_lines(day):
            batch: list[bytes] = []
            for line in lines:
                key, _, payload = line.partition(b"\t")
                flag, key = key[:1], key[1:]
                if key:
                    if key in seen:
                        self.duplicates += 1
                        continue
                    seen.add(key)
                attended += flag == ATTENDED
                batch.append(payload)
            yield batch
        self.attended[day] = attended


@dataclass(frozen=True)
class Committed:
    """What a sink committed: records per day of the window, and the table version it made."""

    counts: dict[date, int]
    #: The Delta version or Iceberg snapshot id of the run's commit; None for files.
    table_version: int | None = None


@runtime_checkable
class OutputSink(Protocol):
    """An output: a guard for the run, then one commit of every day of the extracted window."""

    #: ``jsonl``, ``parquet``, ``delta`` or ``iceberg``: reported in the run's summary.
    file_format: str

    def describe(self) -> str:
        """Where the records go, for logs and the summary (never a secret)."""
        ...

    def guard(
        self, token: str, run_id: str | None, log: Logger
    ) -> AbstractContextManager[RunGuard]:
        """Held from before the run's first request to after its commit."""
        ...

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
        """Store every day of ``days`` (a day without records is emptied). Raises without
        changing what readers see, or after a complete commit."""
        ...

    def committed_counts(self, filters: ManifestFilters) -> dict[date, DayCount]:
        """The records and attended records of every day committed so far (a day of a table
        without rows may be absent: it holds none), read from the output alone.

        :raises LuccaConfigError: the output was extracted with other API filters than
            ``filters``, as far as it records them.
        """
        ...


def same_filters(recorded: object, filters: ManifestFilters) -> bool:
    """Whether filters recorded with committed data are ``filters`` (ids in any order)."""
    if not isinstance(recorded, dict) or set(recorded) != set(filters):
        return False

    def normal(value: object) -> object:
        return sorted(value) if isinstance(value, list) else value

    return all(normal(recorded[key]) == normal(value) for key, value in filters.items())
