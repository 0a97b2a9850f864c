"""Extract realized trainings for a date window into committed daily partitions."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TypedDict

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client import LuccaClient, LuccaTooSlowError
from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.defaults import TIMEOUTS_BEFORE_SPLIT
from airflow_provider_lucca.extraction.commit import ManifestFilters, RunFields, manifest_filters
from airflow_provider_lucca.extraction.errors import LuccaCountMismatchError, LuccaDataChangedError
from airflow_provider_lucca.extraction.formats import get_format
from airflow_provider_lucca.extraction.ledger import Repeats
from airflow_provider_lucca.extraction.lock import LockPolicy
from airflow_provider_lucca.extraction.scratch import scratch_directory
from airflow_provider_lucca.extraction.sinks import DayRecords, OutputSink, RunGuard
from airflow_provider_lucca.extraction.sinks.files import FilesSink
from airflow_provider_lucca.extraction.spool import DaySpooler
from airflow_provider_lucca.extraction.storage import StoragePath
from airflow_provider_lucca.extraction.window import DateWindow

DATASET = "lucca.realized_trainings"
PROGRESS_LOG_SECONDS = 1.0
DEFAULT_MAX_REREADS = 2
MAX_REREADS = 5

#: A half-open window of days as ISO dates (``from`` is a keyword: functional syntax).
DayRange = TypedDict("DayRange", {"from": str, "until": str})


class ExtractionSummary(TypedDict):
    """What a run returns (the operator's XCom): counts and where, never the records."""

    output_path: str
    file_format: str
    window: DayRange
    extracted_window: DayRange
    #: ISO day -> records committed on it, for every day of the extracted window.
    partitions: dict[str, int]
    records: int
    received: int
    reported_count: int | None
    outside_window: int
    duplicates_dropped: int
    reads: int
    #: The windows the last read was cut into: more than 1 where Lucca timed out on a wide one.
    slices: int
    #: The Delta version or Iceberg snapshot id the run committed; None for files.
    table_version: int | None
    requests: int
    retries: int
    duration_seconds: float
    run_token: str
    #: The tenant of the list (``tenant=<name>/``, the tables' ``tenant`` column); None alone.
    tenant: str | None


@dataclass(frozen=True)
class ExtractionRequest:
    """What to extract: a window, the days before it to refresh, the API filters, the format.

    :param window: ``[start, end)`` on ``sessionEndsOn``.
    :param lookback_days: also re-extract that many days before ``window.start`` (late CSV imports).
    :param fail_on_count_mismatch: fail when the records received differ from the API's ``count``
        (False only warns).
    :param max_rereads: how many times to read the window again when a read shows that the data
        changed while paging (a record served on two days, a changing count).
    :param confirm_reads: commit a read only when a second read served the same ids on the same
        days: catches a record that left the window while another entered it during paging
        (the count unchanged, nothing repeated), at twice the requests.
    """

    window: DateWindow
    lookback_days: int = 0
    owner_ids: tuple[int, ...] | None = None
    has_attended: bool | None = None
    training_ids: tuple[int, ...] | None = None
    file_format: str = "jsonl"
    fail_on_count_mismatch: bool = True
    max_rereads: int = DEFAULT_MAX_REREADS
    confirm_reads: bool = False
    tenant: str | None = None

    @property
    def extracted_window(self) -> DateWindow:
        return self.window.with_lookback(self.lookback_days)

    def filters(self) -> ManifestFilters:
        return manifest_filters(self.owner_ids, self.has_attended, self.training_ids)


def extract_realized_trainings(
    client: LuccaClient,
    request: ExtractionRequest,
    output: StoragePath | OutputSink,
    *,
    log: Logger,
    run_id: str | None = None,
    lock_policy: LockPolicy | None = None,
) -> ExtractionSummary:
    """Stream the window from Lucca, spool it locally by day, then commit every day at once.

    The run holds its sink's guard (the files' dataset lock) from before its first request to
    after its commit. Nothing is written to the output until a read of the window is consistent
    (no record served twice, the count steady and matched by distinct records), so a failed
    extraction never replaces committed data.

    :param output: a sink (:mod:`.sinks`), or a dataset root (an ``ObjectStoragePath`` or any
        :class:`StoragePath`) for part files in ``request.file_format``.
    :param lock_policy: the dataset lock's timeout and lease, for a dataset root.
    :return: a small summary for XCom (never the records).
    """
    started = time.monotonic()
    sink = (
        output
        if isinstance(output, OutputSink)
        else FilesSink(output, get_format(request.file_format), lock_policy)
    )
    extracted = request.extracted_window
    requests_before, retries_before = client.stats.requests, client.stats.retries
    token = uuid.uuid4().hex[:12]
    with sink.guard(token, run_id, log) as guard, scratch_directory(log) as workdir:
        read = _read_consistently(client, request, workdir, log, started, guard)
        records = DayRecords(read.spooler, read.superseded() if read.repeats.moved else {})
        spooler = read.spooler
        _check_count(read, request.fail_on_count_mismatch, log)
        extracted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest_fields: RunFields = {
            "dataset": DATASET,
            "file_format": sink.file_format,
            "window": {
                "from": extracted.start.isoformat(),
                "until": extracted.end.isoformat(),
                "requested_from": request.window.start.isoformat(),
                "lookback_days": request.lookback_days,
            },
            "filters": request.filters(),
            "api": {"reported_count": read.reported, "received": spooler.stats.received},
            "run": {"token": token, "run_id": run_id, "extracted_at": extracted_at},
            "provider_version": __version__,
        }
        committed = sink.commit(
            list(extracted.days()), records, manifest_fields, workdir=workdir, guard=guard, log=log
        )

    written = sum(committed.counts.values())
    summary: ExtractionSummary = {
        "output_path": sink.describe(),
        "file_format": sink.file_format,
        "window": {
            "from": request.window.start.isoformat(),
            "until": request.window.end.isoformat(),
        },
        "extracted_window": {
            "from": extracted.start.isoformat(),
            "until": extracted.end.isoformat(),
        },
        "partitions": {day.isoformat(): count for day, count in committed.counts.items()},
        "records": written,
        "received": spooler.stats.received,
        "reported_count": read.reported,
        "outside_window": spooler.stats.outside_window,
        "duplicates_dropped": records.duplicates,
        "reads": read.number,
        "slices": read.slices,
        "table_version": committed.table_version,
        "requests": client.stats.requests - requests_before,
        "retries": client.stats.retries - retries_before,
        "duration_seconds": round(time.monotonic() - started, 3),
        "run_token": token,
        "tenant": request.tenant,
    }
    log.info(
        "Committed %d records in %d daily partitions %s to %s (%d requests, %d retries, %.1f s)",
        written,
        len(committed.counts),
        extracted,
        sink.describe(),
        summary["requests"],
        summary["retries"],
        summary["duration_seconds"],
    )
    return summary


@dataclass
class WindowRead:
    """One pass over the window's pages, spooled, with what it reveals about its consistency."""

    number: int
    spooler: DaySpooler
    reported: int | None
    repeats: Repeats
    count_change: str | None = None
    slices: int = 1

    @property
    def distinct(self) -> int:
        return self.spooler.stats.received - self.repeats.extra

    def change(self) -> str | None:
        """What shows that the data changed while paging, or None.

        A record served on two days moved; a steady count with a repeated record and a missing
        one is a page shift. A count that is merely wrong, with no repeat, is not a change: it is
        left to :func:`_check_count`.
        """
        if self.count_change is not None:
            return self.count_change
        if self.repeats.moved:
            return (
                f"{len(self.repeats.moved)} records were served on two days "
                f"({self.repeats.describe_moves()})"
            )
        if self.repeats.extra and self.reported is not None and self.distinct != self.reported:
            missing = self.reported - self.distinct
            return f"{self.repeats.extra} records were served twice and {missing} never"
        return None

    def superseded(self) -> dict[date, set[bytes]]:
        """Per day, the spool keys of moved records to leave out: each one stays only on the day
        it was served on last (used only when the user chose to commit an inconsistent read)."""
        exclude: dict[date, set[bytes]] = {}
        for record_id, days in self.repeats.moved.items():
            for day in set(days) - {days[-1]}:
                exclude.setdefault(day, set()).add(str(record_id).encode())
        return exclude


def _read_consistently(
    client: LuccaClient,
    request: ExtractionRequest,
    workdir: str,
    log: Logger,
    started: float,
    lock: RunGuard,
) -> WindowRead:
    """Read the window until one read is consistent, at most ``1 + max_rereads`` times (one more
    with ``confirm_reads``, where a read counts only once a second read serves the same ids on
    the same days)."""
    reads = 1 + request.max_rereads + (1 if request.confirm_reads else 0)
    candidate: WindowRead | None = None  # a consistent read waiting for its confirmation
    slices = [request.extracted_window]  # narrowed where Lucca times out, kept for rereads
    for number in range(1, reads + 1):
        lock.check()
        directory = os.path.join(workdir, f"read-{number}")
        os.mkdir(directory)
        read = _read_once(client, request, directory, number, log, started, slices)
        change = read.change()
        if change is None and not request.confirm_reads:
            return read
        if change is None:
            if candidate is not None and candidate.spooler.ledger.same_as(read.spooler.ledger):
                shutil.rmtree(candidate.spooler.directory)
                return read
            if candidate is not None:
                change = (
                    f"read {number} served other records or days than read {candidate.number} "
                    "(a record entered or left the window while paging)"
                )
                shutil.rmtree(candidate.spooler.directory)
            elif number < reads:
                log.info("Read %d is consistent; reading again to confirm it.", number)
            candidate = read
            if change is None and number < reads:
                continue
        if number < reads:
            log.warning(
                "Lucca's data changed while read %d of %s was paging: %s. Reading the window "
                "again (%d more reads allowed).",
                number,
                request.extracted_window,
                change,
                reads - number,
            )
            if candidate is not read:
                shutil.rmtree(directory)
            continue
        change = change or "no second read was left to confirm the last one"
        message = (
            f"Lucca's data changed while paging in each of {reads} reads of "
            f"{request.extracted_window}; in the last one {change}."
        )
        if request.fail_on_count_mismatch or read.count_change is not None:
            raise LuccaDataChangedError(
                f"{message} Nothing was committed. Re-run when imports into Lucca have settled, "
                "or raise max_rereads."
            )
        log.warning(
            "%s Committing it anyway because fail_on_count_mismatch=False: each moved record "
            "only on the day it was served on last.",
            message,
        )
        return read
    raise AssertionError("unreachable")  # pragma: no cover


def _read_once(
    client: LuccaClient,
    request: ExtractionRequest,
    directory: str,
    number: int,
    log: Logger,
    started: float,
    slices: list[DateWindow],
) -> WindowRead:
    """Spool every page of one read, slice by slice; stop early if a reported count changes.

    ``slices`` cover the window in order (the whole window at first). A slice whose request
    keeps timing out (Lucca's 408 after 5 s) is dropped from the spool and read as two halves
    instead, down to single days; the list is updated in place, so a read again starts from
    the slices that passed. A read made of several slices probes each slice's count once more
    at the end, and checks that every record a slice's request served on a neighbour's day (the
    inclusive reading of the bounds) was served on that day by the neighbour: a record that
    moved from a slice not yet read to one already read would otherwise be missed by both, with
    every count still matching.
    """
    spooler = DaySpooler(request.extracted_window, directory)
    reported: int | None = 0
    counts: list[int | None] = []
    progress = _Progress(started, log)
    index = 0
    while index < len(slices):
        window = slices[index]
        mark = spooler.mark()
        try:
            count, count_change = _read_slice(client, request, window, spooler, progress)
        except LuccaTooSlowError as exc:
            if window.day_count < 2:
                raise
            spooler.rollback(mark)
            slices[index : index + 1] = window.halves()
            log.warning(
                "%s: reading %s in two halves, %s and %s, instead.",
                exc,
                window,
                *slices[index : index + 2],
            )
            continue
        if count_change is not None:
            spooler.flush()
            return WindowRead(
                number, spooler, None, spooler.ledger.repeats(), count_change, len(slices)
            )
        counts.append(count)
        reported = None if reported is None or count is None else reported + count
        index += 1
    spooler.flush()
    count_change = None
    if len(slices) > 1:
        count_change = _recount(client, request, slices, counts) or _seams_changed(spooler)
    return WindowRead(
        number, spooler, reported, spooler.ledger.repeats(), count_change, len(slices)
    )


@dataclass
class _Progress:
    """Logs the records received at most every :data:`PROGRESS_LOG_SECONDS`, across slices."""

    started: float
    log: Logger
    last: float = 0.0

    def page(self, number: int, received: int, reported: int | None, last_page: bool) -> None:
        now = time.monotonic()
        if last_page or now - self.last >= PROGRESS_LOG_SECONDS:
            self.last = now
            of = f"/{reported}" if reported is not None else ""
            rate = received / max(now - self.started, 1e-6)
            self.log.info(
                "Page %d: %d%s records received (%.0f records/s)", number, received, of, rate
            )


def _read_slice(
    client: LuccaClient,
    request: ExtractionRequest,
    window: DateWindow,
    spooler: DaySpooler,
    progress: _Progress,
) -> tuple[int | None, str | None]:
    """Spool one slice's pages; return its reported count, and what shows that it changed."""
    after, before = window.request_bounds
    pages = client.iter_realized_trainings(
        owner_ids=request.owner_ids,
        has_attended=request.has_attended,
        training_ids=request.training_ids,
        session_end_on_after=after,
        session_end_on_before=before,
        give_up_on_timeouts=TIMEOUTS_BEFORE_SPLIT if window.day_count > 1 else None,
    )
    reported: int | None = None
    received = 0
    for page in pages:
        if page.number == 1:
            reported = page.count
        elif page.count != reported:
            of = "" if window == spooler.window else f" of {window}"  # a slice of the window
            return reported, (
                f"the reported count{of} changed from {reported} on page 1 to "
                f"{page.count} on page {page.number}"
            )
        spooler.add(page.items, within=window)
        received += len(page.items)
        progress.page(page.number, received, reported, page.next_cursor is None)
    return reported, None


def _seams_changed(spooler: DaySpooler) -> str | None:
    unserved = spooler.unserved_seams()
    if not unserved:
        return None
    shown = ", ".join(f"id={key}" for key in unserved[:5])
    return (
        f"{len(unserved)} records served at a seam between slices were not served on their day "
        f"by the slice that holds it ({shown}): they moved or left between the two reads"
    )


def _recount(
    client: LuccaClient,
    request: ExtractionRequest,
    slices: list[DateWindow],
    counts: list[int | None],
) -> str | None:
    """Each slice's count again, after every slice was read: what changed since, or None."""
    for window, count in zip(slices, counts, strict=True):
        after, before = window.request_bounds
        now = client.count_realized_trainings(
            owner_ids=request.owner_ids,
            has_attended=request.has_attended,
            training_ids=request.training_ids,
            session_end_on_after=after,
            session_end_on_before=before,
        )
        if count is not None and now != count:
            return (
                f"the count of {window} changed from {count} to {now} while the window's other "
                f"{len(slices) - 1} slices were read"
            )
    return None


def _check_count(read: WindowRead, strict: bool, log: Logger) -> None:
    """Distinct records received, across the whole read, must equal the API's count."""
    received, reported = read.spooler.stats.received, read.reported
    if reported is None:
        log.warning("Lucca did not report a count: completeness of %d records unchecked", received)
        return
    distinct = read.distinct
    if reported == distinct:
        return
    repeated = read.repeats.extra
    message = (
        f"Received {distinct} records"
        + (f" ({received} items, {repeated} of them repeated)" if repeated else "")
        + f" but Lucca reported count={reported} for the request"
    )
    if strict:
        raise LuccaCountMismatchError(
            f"{message}: the extraction is incomplete or inconsistent, nothing was committed "
            "(fail_on_count_mismatch=False would only warn)."
        )
    log.warning("%s; committing anyway because fail_on_count_mismatch=False.", message)
