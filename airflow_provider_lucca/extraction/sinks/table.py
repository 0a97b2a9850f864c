"""What the Delta and Iceberg sinks share: the rows of a window, its predicate, run metadata, and
the retry of a commit that lost a race."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from typing import Any, TypeVar

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.commit import RunFields
from airflow_provider_lucca.extraction.errors import LuccaStorageError
from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN, RecordSchema
from airflow_provider_lucca.extraction.sinks.base import DayRecords

#: How many times a run commits again after another writer committed an overlapping change first.
DEFAULT_COMMIT_RETRIES = 5
T = TypeVar("T")


class WindowRows:
    """The window's rows as Arrow batches, day after day, counted as they stream.

    Streams from the local spool, so a commit of a 10-year window holds one batch in memory, and
    can be iterated again when a commit is retried (counts restart with it).
    """

    def __init__(self, schema: RecordSchema, days: Sequence[date], records: DayRecords) -> None:
        self.schema = schema
        self.days = days
        self.records = records
        self.counts: dict[date, int] = {}

    def batches(self) -> Iterator[Any]:
        self.counts = dict.fromkeys(self.days, 0)
        self.records.duplicates = 0
        for day in self.days:
            for batch in self.schema.batches(self.records.batches(day), day):
                self.counts[day] += batch.num_rows
                yield batch

    def total(self) -> int:
        """The rows the window will commit, from a pass over the spool without building rows
        (the run's metadata names it, and goes into the commit before the rows stream)."""
        total = 0
        for day in self.days:
            for batch in self.records.batches(day):
                total += len(batch)
        self.records.duplicates = 0
        return total

    def reader(self) -> Any:
        """A ``pyarrow.RecordBatchReader`` over :meth:`batches` (what both table libraries take)."""
        return self.schema.pa.RecordBatchReader.from_batches(self.schema.arrow, self.batches())


def window_bounds(days: Sequence[date]) -> tuple[date, date]:
    """``[first, last]`` of a non-empty run of consecutive days."""
    if not days:
        raise ValueError("a run commits at least one day")
    return days[0], days[-1]


def commit_metadata(fields: RunFields, records: int) -> dict[str, str]:
    """The run's description, as string pairs in the table's history (Delta commitInfo, Iceberg
    snapshot summary): which run wrote this, and what it covered."""
    window = fields["window"]
    return {
        "lucca.dataset": fields["dataset"],
        "lucca.window_from": window["from"],
        "lucca.window_until": window["until"],
        "lucca.requested_from": window["requested_from"],
        "lucca.lookback_days": str(window["lookback_days"]),
        "lucca.filters": json.dumps(fields["filters"], sort_keys=True),
        "lucca.api_reported_count": json.dumps(fields["api"]["reported_count"]),
        "lucca.api_received": str(fields["api"]["received"]),
        "lucca.records": str(records),
        "lucca.run_id": fields["run"]["run_id"] or "",
        "lucca.run_token": fields["run"]["token"],
        "lucca.extracted_at": fields["run"]["extracted_at"],
        "lucca.provider_version": fields["provider_version"],
    }


def commit_with_retries(
    attempt: Callable[[int], T],
    *,
    is_conflict: Callable[[BaseException], bool],
    retries: int,
    target: str,
    log: Logger,
) -> T:
    """Run ``attempt(n)`` until it commits; a conflict (another writer committed an overlapping
    change first) is retried on the new table version, any other failure is a storage error.

    Retrying is right because the commit replaces the whole window whatever the table holds: on
    the new version it still leaves exactly this run's rows in the window.
    """
    for number in range(1, retries + 2):
        try:
            return attempt(number)
        except Exception as exc:
            if is_conflict(exc) and number <= retries:
                log.warning(
                    "Another writer committed to %s first (%s); committing again on the new "
                    "table version (retry %d of %d).",
                    target,
                    exc,
                    number,
                    retries,
                )
                time.sleep(min(0.2 * number, 2.0))
                continue
            if is_conflict(exc):
                message = (
                    f"{retries + 1} commits of the window each lost a race with another writer "
                    f"({type(exc).__name__}: {exc}); {target} still shows the table as it was "
                    "before this run."
                )
            else:
                message = (
                    f"The table commit failed ({type(exc).__name__}: {exc}). If the store took "
                    f"the commit before failing, {target} holds this run's version, otherwise the "
                    "one before it: never a mix. Re-run the window to be sure."
                )
            raise LuccaStorageError(message, phase="commit", committed_days=()) from exc
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "DEFAULT_COMMIT_RETRIES",
    "PARTITION_COLUMN",
    "WindowRows",
    "commit_metadata",
    "commit_with_retries",
    "window_bounds",
]
