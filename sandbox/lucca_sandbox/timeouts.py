"""Which API requests the sandbox answers with Lucca's 408 "send a simpler request".

Lucca aborts a request that runs over 5 s with 408 and asks for a simpler one, which a wide
window of a big tenant keeps getting: a client must narrow its window (split it) rather than
retry the same heavy request. The sandbox has no slow database, so it decides up front from
two thresholds, and the handler waits ``timeout_delay_seconds`` before answering as Lucca
waits its 5 s.

The width of a window is ``(sessionEndOnBefore - sessionEndOnAfter).days``, whatever the
bounds reading: ``after=2025-02-28&before=2025-04-01`` is 32 days wide. A window exactly
``timeout_window_days`` wide is answered; a missing bound makes it unbounded, hence too wide.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from .config import SandboxConfig
from .query import Filters

__all__ = ["timeout_detail", "window_days"]


def window_days(filters: Filters) -> int | None:
    """The window's width in days, or None when a bound is missing (unbounded)."""
    if filters.after is None or filters.before is None:
        return None
    return (date.fromisoformat(filters.before) - date.fromisoformat(filters.after)).days


def timeout_detail(config: SandboxConfig, filters: Filters, count: Callable[[], int]) -> str | None:
    """The 408 problem's detail when the request is too heavy for ``config``, else None.

    ``count`` gives the number of records the filters match; it is called only when
    ``timeout_records`` is set and the window passed.
    """
    advice = (
        "The request took too long and was aborted; send a simpler request: a narrower "
        "sessionEndOnAfter..sessionEndOnBefore window or more filters."
    )
    limit = config.timeout_window_days
    if limit is not None:
        width = window_days(filters)
        if width is None:
            return f"{advice} (The window needs both bounds, at most {limit} days apart.)"
        if width > limit:
            return f"{advice} (The window is {width} days wide, more than {limit}.)"
    most = config.timeout_records
    if most is not None:
        matching = count()
        if matching > most:
            return f"{advice} (The filters match {matching} records, more than {most}.)"
    return None
