"""Client-side pacing: spread requests evenly under the tenant's requests-per-minute budget.

Pacing is separate from retrying. Retrying reacts to a 429 after the fact; pacing makes sure a long
extraction never causes one, and leaves the rest of the tenant's shared budget (payroll, BI...) to
the other integrations instead of bursting through it at the start of each minute.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol

#: Requests are spaced 1% wider than the nominal interval, so that jitter in network latency never
#: pushes request N+rpm inside the server's 60-second window of request N.
SAFETY_MARGIN = 0.01


class Pacer(Protocol):
    """Where a client takes its request slots: this process (:class:`RequestPacer`), or a budget
    every worker shares (:class:`~airflow_provider_lucca.client.budget.SharedBudget`)."""

    def wait(self) -> float:
        """Block until the next request may start; return the seconds waited."""

    def hold(self, seconds: float) -> None:
        """No request before ``seconds`` from now: the server answered 429 and asked for a pause,
        which every process sharing the budget must respect, not only the one that got it."""


def interval_of(requests_per_minute: float) -> float:
    """Seconds between two request slots; 0 when pacing is off."""
    return 60.0 / requests_per_minute * (1 + SAFETY_MARGIN) if requests_per_minute > 0 else 0.0


class RequestPacer:
    """Evenly spaced request slots; thread-safe, so threads sharing one client share one budget.

    :param requests_per_minute: the budget; 0 (or less) disables pacing.
    """

    def __init__(
        self,
        requests_per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval_of(requests_per_minute)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_slot: float | None = None

    def wait(self) -> float:
        """Block until the next request may start; return the seconds waited."""
        if self.interval == 0.0:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = now if self._next_slot is None else max(now, self._next_slot)
            self._next_slot = slot + self.interval
        waited = slot - now
        if waited > 0:
            self._sleep(waited)
        return waited

    def hold(self, seconds: float) -> None:
        if self.interval == 0.0 or seconds <= 0:
            return
        with self._lock:
            until = self._clock() + seconds
            self._next_slot = until if self._next_slot is None else max(self._next_slot, until)
