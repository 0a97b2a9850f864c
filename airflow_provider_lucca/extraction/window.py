"""Date windows on ``sessionEndsOn``: half-open ``[start, end)`` like Airflow's data interval."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.client.query import validate_date

ONE_DAY = timedelta(days=1)


@dataclass(frozen=True)
class DateWindow:
    """Calendar days ``start <= day < end``."""

    start: date
    end: date

    def __post_init__(self) -> None:
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

    def with_lookback(self, days: int) -> DateWindow:
        return DateWindow(self.start - timedelta(days=days), self.end)

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
        days are dropped on the client.
        """
        return self.start - ONE_DAY, self.end

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"
