"""The request log: when each API request arrived and what it got, for proofs about pacing.

Counters (``/_sandbox/stats``) say how many requests got a 429, not when the others came. A test
that claims a client stayed within its budget in every minute, or that two tenants were read at
the same time, needs the arrival times themselves, read from the server's side rather than the
client's own account of them. Bounded: the last :data:`CAPACITY` answers are kept and the
evicted ones counted, so a sandbox serving a long benchmark never grows without limit.

Only what the request line carries is kept (path and query); the API key travels in a header
and is never read here. Path and query are cut at :data:`MAX_TEXT` characters, so a hostile or
huge query cannot make the bound meaningless.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from typing import Any

__all__ = ["CAPACITY", "MAX_TEXT", "RequestLog"]

#: Entries kept; older ones are dropped (and counted).
CAPACITY = 100_000
#: Longest path or query kept, in characters; longer ones end with ``...``.
MAX_TEXT = 1024

_Entry = tuple[int, float, "int | None", str, str]


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


class RequestLog:
    """Arrival time, status, path and query of the API requests answered, in arrival order.

    :meth:`arrive` stamps a request when its handling begins (one lock, so the arrival order
    and the times agree); :meth:`record` files it once answered. Requests answer out of order
    (a ``slow`` fault, a long page), so :meth:`snapshot` puts them back in arrival order.
    """

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is None:
            capacity = CAPACITY  # read now, so tests can shrink it as they shrink the rate window
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._entries: deque[_Entry] = deque(maxlen=capacity)
        self._dropped = 0
        self._lock = threading.Lock()
        self._sequence = itertools.count()

    def arrive(self) -> tuple[int, float]:
        """Stamp a request that is arriving: ``(sequence, wall-clock time.time())``."""
        with self._lock:
            return next(self._sequence), time.time()

    def record(self, arrival: tuple[int, float], status: int | None, path: str, query: str) -> None:
        """File an answered request; ``status`` None means no answer (a dropped connection)."""
        sequence, at = arrival
        entry = (sequence, at, status, _cut(path), _cut(query))
        with self._lock:
            if len(self._entries) == self._entries.maxlen:
                self._dropped += 1
            self._entries.append(entry)

    def snapshot(self) -> dict[str, Any]:
        """The ``GET /_sandbox/requests`` payload: ``{"requests": [...], "dropped": n}``."""
        with self._lock:
            entries = sorted(self._entries)  # by arrival sequence
            dropped = self._dropped
        return {
            "requests": [
                {"at": at, "status": status, "path": path, "query": query}
                for _, at, status, path, query in entries
            ],
            "dropped": dropped,
        }

    def clear(self) -> None:
        """Forget every entry and the dropped count (``reset-stats``)."""
        with self._lock:
            self._entries.clear()
            self._dropped = 0
