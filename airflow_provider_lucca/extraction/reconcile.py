"""Find late imports and deletions anywhere in history from Lucca's counts, and re-extract only the
days that differ.

Realized trainings carry no updated-at, CSV imports add records with past end dates at any time,
and deletions leave no trace: only reading a day again shows what changed in it. Lucca counts
without reading (``fields.root=count&limit=0``, the same filters applying), so each month of
history is compared in two requests (all records, and the ones not attended) with what the output
committed; a month that differs is cut in halves, and only the half whose counts differ is looked
into, down to single days (or read whole once it fits in one page, which gives its days' counts
in one request). The days found are re-extracted through the normal extraction and commit.

What counts cannot see: an edit that changes neither count (a corrected title, a duration), or a
deletion and an import cancelling out within the same month. ``lookback_days`` and a periodic
full re-extraction (the history DAG) cover those; see the README.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Literal, TypedDict

from airflow_provider_lucca.client import LuccaClient, LuccaTooSlowError
from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.defaults import TIMEOUTS_BEFORE_SPLIT
from airflow_provider_lucca.extraction.commit import ManifestFilters, manifest_filters
from airflow_provider_lucca.extraction.formats import get_format
from airflow_provider_lucca.extraction.lock import LockPolicy
from airflow_provider_lucca.extraction.realized_trainings import (
    DEFAULT_MAX_REREADS,
    DayRange,
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import OutputSink
from airflow_provider_lucca.extraction.sinks.base import NO_RECORDS, DayCount
from airflow_provider_lucca.extraction.sinks.files import FilesSink
from airflow_provider_lucca.extraction.spool import DATE_FIELD, is_attended
from airflow_provider_lucca.extraction.storage import StoragePath
from airflow_provider_lucca.extraction.window import ONE_DAY, DateWindow

#: How Lucca reads ``sessionEndOnAfter`` / ``sessionEndOnBefore``: v1 documents them as
#: exclusive, v2 says nothing. A count must cover the window's days exactly, so each run learns it.
BoundsReading = Literal["exclusive", "inclusive"]
#: Windows whose first page is read, at most, to find a day holding records in Lucca.
LISTINGS_TO_LEARN_BOUNDS = 4


class _Filters(TypedDict):
    owner_ids: tuple[int, ...] | None
    training_ids: tuple[int, ...] | None
    has_attended: bool | None


class Counts(TypedDict):
    records: int
    attended: int


class DayChange(TypedDict):
    """A day whose counts differ: what the output had, what Lucca counts, what was committed."""

    day: str
    committed: Counts
    lucca: Counts
    #: Records the re-extraction committed on the day (Lucca's, read again).
    records_now: int | None


class ReconcileSummary(TypedDict):
    """What a reconciliation returns (the operator's XCom): what it checked, found and rewrote."""

    output_path: str
    file_format: str
    tenant: str | None
    #: The days compared (the committed range unless given); None when nothing is committed.
    window: DayRange | None
    months: int
    date_bounds: BoundsReading | None
    #: Requests spent on counting (and reading the small windows that differ).
    check_requests: int
    changed_days: list[DayChange]
    #: The windows re-extracted: runs of consecutive changed days.
    re_extracted: list[DayRange]
    records_rewritten: int
    table_versions: list[int]
    requests: int
    duration_seconds: float


@dataclass(frozen=True)
class ReconcileRequest:
    """What to reconcile, and how to re-extract what differs.

    :param window: the days to compare; None: from the first committed day to the last.
    :param owner_ids: the output's API filters (the committed counts are under them), as for
        :class:`ExtractionRequest`; ``has_attended`` and ``training_ids`` too.
    The other fields are the re-extractions' options (:class:`ExtractionRequest`).
    """

    window: DateWindow | None = None
    owner_ids: tuple[int, ...] | None = None
    has_attended: bool | None = None
    training_ids: tuple[int, ...] | None = None
    file_format: str = "jsonl"
    fail_on_count_mismatch: bool = True
    max_rereads: int = DEFAULT_MAX_REREADS
    confirm_reads: bool = False
    tenant: str | None = None

    def extraction(self, window: DateWindow) -> ExtractionRequest:
        """The re-extraction of ``window`` (no lookback: exactly the days that differ)."""
        return ExtractionRequest(
            window=window,
            owner_ids=self.owner_ids,
            has_attended=self.has_attended,
            training_ids=self.training_ids,
            file_format=self.file_format,
            fail_on_count_mismatch=self.fail_on_count_mismatch,
            max_rereads=self.max_rereads,
            confirm_reads=self.confirm_reads,
            tenant=self.tenant,
        )

    def filters(self) -> ManifestFilters:
        return manifest_filters(self.owner_ids, self.has_attended, self.training_ids)


def reconcile_realized_trainings(
    client: LuccaClient,
    request: ReconcileRequest,
    output: StoragePath | OutputSink,
    *,
    log: Logger,
    run_id: str | None = None,
    lock_policy: LockPolicy | None = None,
) -> ReconcileSummary:
    """Compare the committed days with Lucca's counts; re-extract the days that differ.

    Nothing is written, and no lock taken, when every count matches.
    """
    started = time.monotonic()
    sink = (
        output
        if isinstance(output, OutputSink)
        else FilesSink(output, get_format(request.file_format), lock_policy)
    )
    requests_before = client.stats.requests
    committed = sink.committed_counts(request.filters())
    window = request.window or _committed_range(committed)
    summary: ReconcileSummary = {
        "output_path": sink.describe(),
        "file_format": sink.file_format,
        "tenant": request.tenant,
        "window": None if window is None else _range(window),
        "months": 0,
        "date_bounds": None,
        "check_requests": 0,
        "changed_days": [],
        "re_extracted": [],
        "records_rewritten": 0,
        "table_versions": [],
        "requests": 0,
        "duration_seconds": 0.0,
    }
    if window is None:
        log.info("Nothing is committed in %s yet: nothing to reconcile.", sink.describe())
        return _finish(summary, client, requests_before, started)

    counter = LuccaCounter(client, request, committed, log)
    months = list(_months(window))
    found: dict[date, tuple[DayCount, DayCount]] = {}
    counter.check(months, found)
    summary["months"] = len(months)
    summary["date_bounds"] = counter.bounds
    summary["check_requests"] = client.stats.requests - requests_before
    log.info(
        "Compared %d months of %s with Lucca's counts in %d requests: %d days differ%s",
        len(months),
        window,
        summary["check_requests"],
        len(found),
        "." if found else " (nothing to write).",
    )
    changes: dict[date, DayChange] = {}
    for day, (mine, lucca) in sorted(found.items()):
        log.info(
            "%s: %d records (%d attended) committed, Lucca counts %d (%d attended)",
            day,
            *mine,
            *lucca,
        )
        changes[day] = {
            "day": day.isoformat(),
            "committed": _counts(mine),
            "lucca": _counts(lucca),
            "records_now": None,
        }
    for days in _consecutive(sorted(found)):
        extracted = extract_realized_trainings(
            client,
            request.extraction(days),
            sink,
            log=log,
            run_id=run_id,
            lock_policy=lock_policy,
        )
        _note_rewrite(summary, changes, extracted)
    summary["changed_days"] = list(changes.values())
    return _finish(summary, client, requests_before, started)


class LuccaCounter:
    """Lucca's counts of windows of days, compared with the committed ones.

    Each count is one request per figure: the records, then those with ``hasAttended=false``
    (unless the filters fix attendance); the attended ones are the others, as in the committed
    counts (:func:`~airflow_provider_lucca.extraction.spool.is_attended`), whatever Lucca makes
    of a null ``hasAttended``. A count that keeps timing out (Lucca's 408) is the sum of its
    halves' counts, and wider windows are cut at once from then on.

    Counting a window exactly needs to know how Lucca reads its date bounds, which it does not
    document. Until the first month that tells, months are counted with the bounds
    ``(start - 1, end)``: exactly the month under the exclusive reading, the month and its two
    edge days under the inclusive one. A month whose count matches the committed one under
    exactly one reading tells it, once a second month tells the same (a change can mimic the
    other reading: a month gaining as many records as its edge days hold); under both (its edge
    days are empty), it is unchanged either way; under neither, it waits until the reading is
    known. The months touching the ends of the history are counted last (their edge days lie
    outside it); if no two months agreed, two requests ask (:meth:`learn_bounds`).
    """

    def __init__(
        self,
        client: LuccaClient,
        options: ReconcileRequest,
        committed: dict[date, DayCount],
        log: Logger,
    ) -> None:
        self.client = client
        self.options = options
        self.committed = committed
        self.log = log
        self.bounds: BoundsReading | None = None
        #: The fewest days of a window Lucca timed out on: a window as wide or wider is cut in
        #: halves at once, without spending timeouts of its own.
        self.too_wide: int | None = None

    def check(self, months: list[DateWindow], found: dict[date, tuple[DayCount, DayCount]]) -> None:
        """Note in ``found`` every day of ``months`` (consecutive) whose counts differ."""
        pending: list[tuple[DateWindow, DayCount]] = []  # differ under both readings
        told: list[tuple[DateWindow, DayCount, BoundsReading]] = []  # match under one only

        def learn() -> None:
            # Where Lucca surely has records first: months that differ, then the busiest.
            busiest = sorted(months, key=lambda month: -self.committed_sum(month).records)
            self.learn_bounds([m for m, _ in pending] + [m for m, _, _ in told] + busiest)

        for index in [*range(1, len(months) - 1), 0, len(months) - 1][-len(months) :]:
            month = months[index]
            if self.bounds is None and (index in (0, len(months) - 1) or self._too_wide(month)):
                learn()
            if self.bounds is not None:
                self.drill(month, self.count(month), found)
                continue
            try:
                lucca = self._count_pair(month.request_bounds, split=True)
            except LuccaTooSlowError:
                self._timed_out(month)
                learn()
                self.drill(month, self.count(month), found)
                continue
            narrow_matches = lucca == self.committed_sum(month)
            wide_matches = lucca == self.committed_sum(wide_of(month))
            if narrow_matches == wide_matches:
                if not narrow_matches:
                    pending.append((month, lucca))
                continue
            reading: BoundsReading = "exclusive" if narrow_matches else "inclusive"
            # A change can mimic the other reading (a month gaining its edge days' counts), so
            # two months must agree; when they do not, Lucca is asked.
            if told and told[0][2] != reading:
                learn()
            elif told:
                self.bounds = reading
                self.log.info(
                    "Lucca reads sessionEndOnAfter/Before as %s bounds (told by the counts of %s "
                    "and %s).",
                    reading,
                    told[0][0],
                    month,
                )
            told.append((month, lucca, reading))
        if self.bounds is None and (pending or told):
            learn()
        # A month that told the other reading changed; counted (start - 1, end), it holds the
        # month's days, or the month and its edge days under the inclusive reading.
        pending += [(month, lucca) for month, lucca, reading in told if reading != self.bounds]
        for month, lucca in pending:
            self.drill(month if self.bounds == "exclusive" else wide_of(month), lucca, found)

    def learn_bounds(self, candidates: list[DateWindow]) -> None:
        """Ask Lucca how it reads the bounds: find a day D that holds records in Lucca now (the
        busiest day of one page of a candidate window), then count the records "after D and
        before D": none under the exclusive reading, D's records under the inclusive one.

        Two requests (more if a candidate has no record in Lucca). A committed day is not
        enough: its records may be the ones deleted since. With no record in any candidate,
        the exclusive reading is assumed: counts of empty windows are 0 either way.
        """
        self.bounds = "exclusive"
        day = self._a_day_with_records(candidates)
        if day is not None:
            found = self.client.count_realized_trainings(
                **self._filters(self.options.has_attended),
                session_end_on_after=day,
                session_end_on_before=day,
            )
            self.bounds = "inclusive" if found else "exclusive"
        self.log.info("Lucca reads sessionEndOnAfter/Before as %s bounds.", self.bounds)

    def _a_day_with_records(self, candidates: list[DateWindow]) -> date | None:
        queue = list(dict.fromkeys(candidates))
        for _ in range(LISTINGS_TO_LEARN_BOUNDS):
            if not queue:
                return None
            window = queue.pop(0)
            if self._too_wide(window):
                queue[:0] = window.halves()  # what Lucca may answer in time
                continue
            after, before = window.request_bounds
            try:
                page = next(
                    iter(
                        self.client.iter_realized_trainings(
                            **self._filters(self.options.has_attended),
                            session_end_on_after=after,
                            session_end_on_before=before,
                            give_up_on_timeouts=TIMEOUTS_BEFORE_SPLIT,
                        )
                    )
                )
            except LuccaTooSlowError:
                if window.day_count > 1:
                    self._timed_out(window)
                    queue[:0] = window.halves()
                continue
            days = Counter(_day_of(record.get(DATE_FIELD)) for record in page.items)
            inside = [(n, day) for day, n in days.items() if day is not None and day in window]
            if inside:
                return max(inside)[1]
        return None

    def committed_sum(self, window: DateWindow) -> DayCount:
        return sum((self.committed.get(day, NO_RECORDS) for day in window.days()), NO_RECORDS)

    def count(self, window: DateWindow) -> DayCount:
        """Lucca's counts of exactly the window's days (the reading is known)."""
        records = self._count(window, self.options.has_attended)
        if self.options.has_attended is not None:
            return DayCount(records, records if self.options.has_attended else 0)
        return DayCount(records, records - self._count(window, False))

    def drill(
        self,
        window: DateWindow,
        lucca: DayCount,
        found: dict[date, tuple[DayCount, DayCount]],
    ) -> None:
        """Note in ``found`` each day of ``window`` whose counts differ from Lucca's.

        ``lucca`` is Lucca's count of the window (the second half's is the window's minus the
        first half's: one count per cut). A window that fits in a page is read instead: one
        request gives every day's counts.
        """
        committed = self.committed
        mine = self.committed_sum(window)
        if lucca == mine:
            return
        if window.day_count == 1:
            found[window.start] = (mine, lucca)
            return
        if lucca.records <= 0:  # everything committed here was deleted: nothing to read
            for day in window.days():
                if committed.get(day, NO_RECORDS).records:
                    found[day] = (committed[day], NO_RECORDS)
            return
        if lucca.records <= self.client.config.page_size and self._read(window, found):
            return
        first, second = window.halves()
        in_first = self.count(first)
        self.drill(first, in_first, found)
        self.drill(second, lucca - in_first, found)

    def _read(self, window: DateWindow, found: dict[date, tuple[DayCount, DayCount]]) -> bool:
        """Every day's counts from the window's records; False if Lucca times out on it."""
        seen: dict[date, dict[object, bool]] = {day: {} for day in window.days()}
        after, before = window.request_bounds  # a superset either way: days are taken from items
        try:
            for page in self.client.iter_realized_trainings(
                **self._filters(self.options.has_attended),
                session_end_on_after=after,
                session_end_on_before=before,
                give_up_on_timeouts=TIMEOUTS_BEFORE_SPLIT,
            ):
                for record in page.items:
                    day = _day_of(record.get(DATE_FIELD))
                    if day not in seen:
                        continue  # another day, or none: the re-extraction reports a bad one
                    # An id served twice on a day is stored once, as the extraction does; a
                    # record without a usable id is always one more.
                    record_id = record.get("id")
                    key = record_id if isinstance(record_id, int | str) else (len(seen[day]),)
                    seen[day][key] = is_attended(record)
        except LuccaTooSlowError:
            return False
        for day, records in seen.items():
            lucca = DayCount(len(records), sum(records.values()))
            mine = self.committed.get(day, NO_RECORDS)
            if lucca != mine:
                found[day] = (mine, lucca)
        return True

    def _count(self, window: DateWindow, has_attended: bool | None) -> int:
        if not self._too_wide(window):
            try:
                return self._count_once(
                    self._exact_bounds(window), has_attended, split=window.day_count > 1
                )
            except LuccaTooSlowError as exc:
                self._timed_out(window)
                self.log.warning("%s: counting %s by halves.", exc, window)
        first, second = window.halves()
        return self._count(first, has_attended) + self._count(second, has_attended)

    def _too_wide(self, window: DateWindow) -> bool:
        return self.too_wide is not None and window.day_count >= self.too_wide > 1

    def _timed_out(self, window: DateWindow) -> None:
        self.too_wide = min(self.too_wide or window.day_count, window.day_count)

    def _count_pair(self, bounds: tuple[date, date], *, split: bool) -> DayCount:
        records = self._count_once(bounds, self.options.has_attended, split=split)
        if self.options.has_attended is not None:
            return DayCount(records, records if self.options.has_attended else 0)
        return DayCount(records, records - self._count_once(bounds, False, split=split))

    def _count_once(
        self, bounds: tuple[date, date], has_attended: bool | None, *, split: bool
    ) -> int:
        """One count; with ``split``, :class:`LuccaTooSlowError` once it keeps timing out."""
        return self.client.count_realized_trainings(
            **self._filters(has_attended),
            session_end_on_after=bounds[0],
            session_end_on_before=bounds[1],
            give_up_on_timeouts=TIMEOUTS_BEFORE_SPLIT if split else None,
        )

    def _exact_bounds(self, window: DateWindow) -> tuple[date, date]:
        """Bounds whose matches are exactly the window's days under the learnt reading."""
        if self.bounds == "inclusive":
            return window.start, window.end - ONE_DAY
        return window.request_bounds

    def _filters(self, has_attended: bool | None) -> _Filters:
        return {
            "owner_ids": self.options.owner_ids,
            "training_ids": self.options.training_ids,
            "has_attended": has_attended,
        }


def _day_of(value: object) -> date | None:
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    return None


def wide_of(window: DateWindow) -> DateWindow:
    """The window and its two edge days: what ``(start - 1, end)`` matches, read inclusively."""
    return DateWindow(window.start - ONE_DAY, window.end + ONE_DAY)


def _months(window: DateWindow) -> Iterator[DateWindow]:
    """The window cut at the first day of each calendar month."""
    start = window.start
    while start < window.end:
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        end = min(following, window.end)
        yield DateWindow(start, end)
        start = end


def _consecutive(days: list[date]) -> Iterator[DateWindow]:
    """Sorted days as windows of consecutive days."""
    run: list[date] = []
    for day in days:
        if run and day != run[-1] + ONE_DAY:
            yield DateWindow(run[0], run[-1] + ONE_DAY)
            run = []
        run.append(day)
    if run:
        yield DateWindow(run[0], run[-1] + ONE_DAY)


def _committed_range(committed: dict[date, DayCount]) -> DateWindow | None:
    if not committed:
        return None
    return DateWindow(min(committed), max(committed) + ONE_DAY)


def _note_rewrite(
    summary: ReconcileSummary, changes: dict[date, DayChange], extracted: ExtractionSummary
) -> None:
    summary["re_extracted"].append(extracted["window"])
    summary["records_rewritten"] += extracted["records"]
    if extracted["table_version"] is not None:
        summary["table_versions"].append(extracted["table_version"])
    for day, records in extracted["partitions"].items():
        changes[date.fromisoformat(day)]["records_now"] = records


def _finish(
    summary: ReconcileSummary, client: LuccaClient, requests_before: int, started: float
) -> ReconcileSummary:
    summary["requests"] = client.stats.requests - requests_before
    summary["duration_seconds"] = round(time.monotonic() - started, 3)
    return summary


def _counts(count: DayCount) -> Counts:
    return {"records": count.records, "attended": count.attended}


def _range(window: DateWindow) -> DayRange:
    return {"from": window.start.isoformat(), "until": window.end.isoformat()}
