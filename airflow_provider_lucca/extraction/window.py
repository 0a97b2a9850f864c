"""Date windows on ``sessionEndsOn``: half-open ``[start, end)`` like Airflow's data interval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo
from typing import ClassVar

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.client.query import validate_date

ONE_DAY = timedelta(days=1)

#: The days a window may hold: 1900-01-01 .. 2199-12-31. Lucca keeps whatever past dates a CSV
#: import gives (trainings carried over from older HR tools), and nothing documents a floor, so
#: the range is not cut at Lucca's launch: 1900 is before any training a tenant can hold, 2199
#: after any it can plan. What the range is for: a typo (0001, 9999, 20255) fails when the DAG is
#: parsed, and no date arithmetic on a window (the lookback, the API's ``start - 1`` bound) can
#: reach ``date.min`` / ``date.max`` and raise OverflowError.
FIRST_DAY = date(1900, 1, 1)
LAST_DAY = date(2199, 12, 31)
#: ``lookback_days`` above ~10 years is a typo: re-extracting a decade every run is not a lookback.
MAX_LOOKBACK_DAYS = 3660
#: Days a window may span, lookback included, unless the operator's ``max_window_days`` raises it:
#: ~10 years, so a century typo (1925 for 2025) fails instead of writing 36,525 empty partitions.
DEFAULT_MAX_WINDOW_DAYS = 3660
#: The longest window the date range holds: the most ``max_window_days`` can usefully be.
MAX_WINDOW_DAYS = (LAST_DAY + ONE_DAY - FIRST_DAY).days


@dataclass(frozen=True)
class DateWindow:
    """Calendar days ``start <= day < end``, within :data:`FIRST_DAY` .. :data:`LAST_DAY`."""

    start: date
    end: date

    FIRST_DAY: ClassVar[date] = FIRST_DAY
    LAST_DAY: ClassVar[date] = LAST_DAY
    MAX_LOOKBACK_DAYS: ClassVar[int] = MAX_LOOKBACK_DAYS
    DEFAULT_MAX_WINDOW_DAYS: ClassVar[int] = DEFAULT_MAX_WINDOW_DAYS

    def __post_init__(self) -> None:
        if not FIRST_DAY <= self.start <= LAST_DAY:
            raise LuccaConfigError(
                f"Invalid session_end_from={self.start}: expected a date from {FIRST_DAY} to "
                f"{LAST_DAY} (YYYY-MM-DD); the window's first day is out of range, a typo?"
            )
        if not FIRST_DAY + ONE_DAY <= self.end <= LAST_DAY + ONE_DAY:
            raise LuccaConfigError(
                f"Invalid session_end_until={self.end}: expected a date from "
                f"{FIRST_DAY + ONE_DAY} to {LAST_DAY + ONE_DAY} (YYYY-MM-DD, the day after the "
                "window); it is out of range, a typo?"
            )
        if self.start >= self.end:
            raise LuccaConfigError(
                f"Empty date window [{self.start}, {self.end}): session_end_from must be before "
                "session_end_until (the end is exclusive, so one day is [D, D+1))."
            )

    @classmethod
    def parse(cls, start: object, end: object) -> DateWindow:
        first = validate_date("session_end_from", start)
        until = validate_date("session_end_until", end)
        if first is None or until is None:
            raise LuccaConfigError("session_end_from and session_end_until must both be set.")
        return cls(first, until)

    @classmethod
    def from_data_interval(cls, start: datetime, end: datetime, tz: tzinfo) -> DateWindow:
        """Calendar days of a data interval, taken in the DAG's timezone.

        A DAG in Europe/Paris runs its 2025-03-10 interval from 2025-03-09T23:00Z: taking the UTC
        date would extract the previous day.
        """
        local_start, local_end = start.astimezone(tz), end.astimezone(tz)
        first, until = local_start.date(), local_end.date()
        if first < until and (local_start.time() != time(0) or local_end.time() != time(0)):
            raise LuccaConfigError(
                f"The run's data interval {start.isoformat()} .. {end.isoformat()} does not start "
                f"and end at midnight in timezone {tz}: it covers parts of days, and taking whole "
                "days would extract a day it does not own. Schedule the DAG at midnight "
                "(CronDataIntervalTimetable('0 0 * * *', timezone=...)), or pass "
                "session_end_from / session_end_until explicitly."
            )
        if first >= until:
            raise LuccaConfigError(
                f"The run's data interval {start.isoformat()} .. {end.isoformat()} covers no whole "
                f"day in timezone {tz}. Airflow 3's default cron timetable gives "
                "data_interval_start == data_interval_end: schedule the DAG with a data-interval "
                "timetable (CronDataIntervalTimetable('0 0 * * *', timezone=...)), or pass "
                "session_end_from / session_end_until explicitly."
            )
        return cls(first, until)

    @property
    def day_count(self) -> int:
        return (self.end - self.start).days

    @staticmethod
    def validate_lookback_days(days: object) -> int:
        """``lookback_days`` as an int from 0 to :data:`MAX_LOOKBACK_DAYS`."""
        if (
            isinstance(days, bool)
            or not isinstance(days, int)
            or not 0 <= days <= MAX_LOOKBACK_DAYS
        ):
            shown = repr(days) if len(repr(days)) <= 60 else repr(days)[:57] + "..."
            raise LuccaConfigError(
                f"Invalid lookback_days={shown}: expected an integer from 0 to "
                f"{MAX_LOOKBACK_DAYS} (about 10 years)."
            )
        return days

    @staticmethod
    def validate_max_window_days(days: object) -> int:
        """``max_window_days`` as an int from 1 to :data:`MAX_WINDOW_DAYS`."""
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_WINDOW_DAYS:
            shown = repr(days) if len(repr(days)) <= 60 else repr(days)[:57] + "..."
            raise LuccaConfigError(
                f"Invalid max_window_days={shown}: expected an integer from 1 to "
                f"{MAX_WINDOW_DAYS} (default {DEFAULT_MAX_WINDOW_DAYS}, about 10 years)."
            )
        return days

    def with_lookback(self, days: int) -> DateWindow:
        """The window extended by ``days`` before its start; a typed error, never an overflow."""
        days = self.validate_lookback_days(days)
        available = (self.start - FIRST_DAY).days
        if days > available:
            raise LuccaConfigError(
                f"Invalid lookback_days={days}: from {self.start} it reaches before {FIRST_DAY}, "
                f"the earliest day supported; expected at most {available} here."
            )
        return DateWindow(self.start - timedelta(days=days), self.end)

    def check_span(self, lookback_days: int, max_window_days: int) -> DateWindow:
        """The window with its lookback, refused when it spans more than ``max_window_days``.

        A window of a century is almost always a typo (1925 for 2025) that would write tens of
        thousands of empty partitions; the message says how to allow it on purpose.
        """
        extended = self.with_lookback(lookback_days)
        limit = self.validate_max_window_days(max_window_days)
        if extended.day_count > limit:
            lookback = f" with lookback_days={lookback_days}" if lookback_days else ""
            raise LuccaConfigError(
                f"The window {self}{lookback} spans {extended.day_count:,} days ({extended}), "
                f"more than max_window_days={limit} (about {limit / 365.25:.0f} years). Check "
                "session_end_from / session_end_until (or the run's data interval) for a typo, "
                "such as 1925 for 2025. To extract that much on purpose, raise the limit: pass "
                f"max_window_days={extended.day_count} (or more) to RealizedTrainingsOperator."
            )
        return extended

    def halves(self) -> tuple[DateWindow, DateWindow]:
        """The window cut in two at its middle day (the first half is the shorter one when the
        day count is odd); a one-day window cannot be cut."""
        if self.day_count < 2:
            raise ValueError(f"{self} is one day: it cannot be split")
        middle = self.start + timedelta(days=self.day_count // 2)
        return DateWindow(self.start, middle), DateWindow(middle, self.end)

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.start <= day < self.end

    def days(self) -> Iterator[date]:
        day = self.start
        while day < self.end:
            yield day
            day += ONE_DAY

    @property
    def request_bounds(self) -> tuple[date, date]:
        """API bounds ``(sessionEndOnAfter, sessionEndOnBefore)`` covering the window either way.

        Lucca's v1 documents exclusive bounds, v2 says nothing. ``(start - 1, end)`` is exactly the
        window under the exclusive reading and a superset under the inclusive one; the extra edge
        days are dropped on the client. ``start - 1`` never overflows: the start is >= 1900.
        """
        return self.start - ONE_DAY, self.end

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"
