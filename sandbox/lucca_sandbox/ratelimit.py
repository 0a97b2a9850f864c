"""The tenant's rate limit: a sliding window over admitted API requests."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["RateLimiter"]

#: Length of the window in seconds, read on every admission (tests shrink it to speed time up).
_RATE_WINDOW = 60.0


class RateLimiter:
    """Sliding 60 s window over admitted requests, global to the server (one tenant).

    Lucca enforces its limit per tenant, shared by every integration, so the sandbox keeps a
    single window. Refused requests are not recorded: a client hammering on 429 must not
    extend its own penalty beyond what the window says. ``clock`` is injectable for tests.
    """

    def __init__(
        self, requests_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.requests_per_minute = requests_per_minute
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> int | None:
        """Admit one request and return None, or return the Retry-After delay in seconds."""
        with self._lock:
            limit = self.requests_per_minute
            if limit <= 0:
                return None
            now = self._clock()
            window_start = now - _RATE_WINDOW
            admitted = self._admitted
            while admitted and admitted[0] <= window_start:
                admitted.popleft()
            if len(admitted) < limit:
                admitted.append(now)
                return None
            # The slot that frees first is the one admitted ``limit`` requests ago.
            frees_at = admitted[len(admitted) - limit] + _RATE_WINDOW
            return max(1, math.ceil(frees_at - now))

    def reset(self) -> None:
        """Forget every admitted request (a fresh minute)."""
        with self._lock:
            self._admitted.clear()
