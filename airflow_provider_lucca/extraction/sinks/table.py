"""What the Delta and Iceberg sinks share: the rows of a window, its predicate, run metadata, and
the retry of a commit that lost a race."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, TypeVar

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.commit import ManifestFilters, RunFields
from airflow_provider_lucca.extraction.errors import LuccaStorageError
from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN, TENANT_COLUMN, RecordSchema
from airflow_provider_lucca.extraction.sinks.base import DayCount, DayRecords, same_filters

#: The columns a table's committed counts are read from.
COUNT_COLUMNS = (PARTITION_COLUMN, "hasAttended")

#: How many times a run commits again after another writer committed an overlapping change first.
DEFAULT_COMMIT_RETRIES = 5
#: The same for a tenant's run. Tenants share one table and usually finish together (one mapped
#: task each): every commit of theirs is a new table version, so each round of a race lets one
#: of them through and the others commit again. Twenty retries with a jittered, growing wait
#: (:func:`jittered_backoff`: about 80 s of waiting in all) let a few dozen tenants finishing at
#: the same instant all commit.
TENANT_COMMIT_RETRIES = 20
T = TypeVar("T")


class WindowRows:
    """The window's rows as Arrow batches, day after day, counted as they stream.

    Streams from the local spool, so a commit of a 10-year window holds one batch in memory, and
    can be iterated again when a commit is retried (counts restart with it).
    """

    def __init__(
        self,
        schema: RecordSchema,
        days: Sequence[date],
        records: DayRecords,
        tenant: str | None = None,
    ) -> None:
        self.schema = schema
        self.days = days
        self.records = records
        self.tenant = tenant
        self.counts: dict[date, int] = {}

    def batches(self) -> Iterator[Any]:
        self.counts = dict.fromkeys(self.days, 0)
        self.records.duplicates = 0
        for day in self.days:
            for batch in self.schema.batches(self.records.batches(day), day, self.tenant):
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


def commit_metadata(fields: RunFields, records: int, tenant: str | None = None) -> dict[str, str]:
    """The run's description, as string pairs in the table's history (Delta commitInfo, Iceberg
    snapshot summary): which run wrote this, for which tenant, and what it covered."""
    window = fields["window"]
    metadata = {
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
    if tenant is not None:
        metadata["lucca.tenant"] = tenant
    return metadata


def linear_backoff(number: int) -> float:
    """The wait before retry ``number`` of a single-account table: 0.2 s more each time, 2 s at
    most (one other writer at a time, usually)."""
    return min(0.2 * number, 2.0)


def jittered_backoff(number: int) -> float:
    """The wait before retry ``number`` of a tenant's commit: doubling from 0.2 s up to 5 s,
    each drawn between half and one and a half times that. Tenants that lost the same round
    would otherwise all come back together and race again; spread out, most commit at their
    next try."""
    return min(0.2 * 2.0 ** (number - 1), 5.0) * random.uniform(0.5, 1.5)


@dataclass(frozen=True)
class CommitRetries:
    """How many times, and after which waits, a table sink commits again after losing a race.

    :param given: the number was the caller's own, not the default for the sink's kind.
    """

    retries: int
    backoff: Callable[[int], float]
    given: bool = False

    @classmethod
    def for_sink(cls, tenant: str | None, retries: int | None) -> CommitRetries:
        """A single-account table's default (5, linear), a tenant's (20, jittered), or the
        caller's number with the wait of the sink's kind."""
        backoff = linear_backoff if tenant is None else jittered_backoff
        if retries is not None:
            return cls(retries, backoff, given=True)
        return cls(DEFAULT_COMMIT_RETRIES if tenant is None else TENANT_COMMIT_RETRIES, backoff)

    def for_compaction(self, tenanted: bool) -> CommitRetries:
        """A compaction of a tenants' table retries as a tenant's commit does (its tenants' runs
        commit often, and any of them may overtake it), unless the sink was given its number."""
        if not tenanted or self.given:
            return self
        return CommitRetries(max(self.retries, TENANT_COMMIT_RETRIES), jittered_backoff)


def commit_with_retries(
    attempt: Callable[[int], T],
    *,
    is_conflict: Callable[[BaseException], bool],
    retries: int,
    target: str,
    log: Logger,
    backoff: Callable[[int], float] = linear_backoff,
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
                time.sleep(backoff(number))
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
    "TENANT_COLUMN",
    "TENANT_COMMIT_RETRIES",
    "CommitRetries",
    "WindowRows",
    "commit_metadata",
    "commit_with_retries",
    "jittered_backoff",
    "linear_backoff",
    "window_bounds",
]


def day_counts(pa: Any, rows: Any) -> dict[date, DayCount]:
    """Rows and attended rows per day of a scan of :data:`COUNT_COLUMNS`.

    A null ``hasAttended`` counts as attended: a record without the field (the spec's default,
    true) is stored as null, and anything but ``false`` is attended
    (:func:`~airflow_provider_lucca.extraction.spool.is_attended`), as in the files.
    """
    import pyarrow.compute as pc

    attended = pc.cast(pc.fill_null(rows["hasAttended"], True), pa.int64())
    grouped = (
        pa.table({"day": rows[PARTITION_COLUMN], "attended": attended})
        .group_by("day")
        .aggregate([("attended", "count"), ("attended", "sum")])
    )
    return {
        day: DayCount(records, attended)
        for day, records, attended in zip(
            grouped["day"].to_pylist(),
            grouped["attended_count"].to_pylist(),
            grouped["attended_sum"].to_pylist(),
            strict=True,
        )
    }


def check_run_filters(
    describe: str,
    commits: Iterable[Mapping[str, str]],
    filters: ManifestFilters,
    tenant: str | None,
) -> None:
    """The newest run commit of ``tenant`` (its ``lucca.filters``) must have been made with
    ``filters``: each tenant of a shared table has filters of its own (owner ids are an
    account's).

    :param commits: the commits' metadata, newest first.
    """
    for metadata in commits:
        recorded = metadata.get("lucca.filters")
        if recorded is None or metadata.get("lucca.tenant") != tenant:
            continue  # a maintenance commit, or another tenant's run
        if not same_filters(json.loads(recorded), filters):
            raise LuccaConfigError(
                f"{describe} was last extracted with filters {recorded}, not {filters}: pass the "
                "filters the table was extracted with (owner_ids, has_attended, training_ids)."
            )
        return
