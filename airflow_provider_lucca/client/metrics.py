"""What the client reports as it works, for a platform team's dashboards and alerts.

The client only names events (``requests``, ``rate_limited``, ``pacing_wait``...) and hands them
to a :class:`Metrics` object; where they go is the caller's business. The Airflow hook passes one
that forwards them to Airflow's StatsD / OpenTelemetry metrics as ``lucca.<account>.<event>``
(:mod:`airflow_provider_lucca.hooks.stats`); anything else (a script, a benchmark) gets
:data:`NO_METRICS`, which costs one empty method call per event.

The account in a metric name comes from :func:`account_label`: the account URL's host (and port)
reduced to ``[a-z0-9_]``, so that it is one StatsD path segment, whatever backend reads it.
The API key never appears in a name or a tag.
"""

from __future__ import annotations

import re
from typing import Protocol
from urllib.parse import urlsplit

__all__ = [
    "COUNTERS",
    "NO_METRICS",
    "PREFIX",
    "TIMERS",
    "Metrics",
    "NoMetrics",
    "account_label",
]

#: Every metric name starts with it.
PREFIX = "lucca"

# -- the client's events, one call per attempt at most --------------------------------------------

#: Every HTTP attempt sent (retries included): the sandbox's request log counts the same.
REQUESTS = "requests"
#: Attempts made again after a failure (each follows a ``retry_wait``).
RETRIES = "retries"
#: HTTP 429 answers: the account's rate limit was reached.
RATE_LIMITED = "rate_limited"
#: HTTP 5xx answers.
SERVER_ERRORS = "server_errors"
#: HTTP 408 answers: Lucca aborted a request that ran over its limit.
TIMEOUTS = "timeouts"
#: Other error answers (400, 401, 403, 404, redirects): not retried, the run fails.
REFUSED = "refused"
#: Attempts without an answer: connect or read timeout, connection refused, reset or dropped.
TRANSPORT_ERRORS = "transport_errors"
#: Requests that ended in an error after their retries (or at once when not worth retrying);
#: not a window Lucca timed out on, which the extraction reads again by halves (see TIMEOUTS).
GAVE_UP = "gave_up"
#: Seconds waited for a request slot (the process's pacer, or the shared Redis budget).
PACING_WAIT = "pacing_wait"
#: Seconds slept before a retry (backoff, or the server's Retry-After).
RETRY_WAIT = "retry_wait"

# -- a run's outcome, from its summary (the operator reports them once per run) ------------------

#: Records committed by the run (extraction), or rewritten (reconciliation).
RECORDS_WRITTEN = "records_written"
#: Days (partitions) the run committed.
DAYS_WRITTEN = "days_written"
#: Reads of the window (1, more when Lucca's data moved while paging or reads are confirmed).
READS = "reads"

#: The counters, in the README's order.
COUNTERS = (
    REQUESTS,
    RETRIES,
    RATE_LIMITED,
    SERVER_ERRORS,
    TIMEOUTS,
    REFUSED,
    TRANSPORT_ERRORS,
    GAVE_UP,
    RECORDS_WRITTEN,
    DAYS_WRITTEN,
    READS,
)
#: The timers (values in seconds; backends record milliseconds).
TIMERS = (PACING_WAIT, RETRY_WAIT)

#: Longest account label: metric names stay far below StatsD's and OpenTelemetry's limits.
ACCOUNT_LABEL_MAX = 60
_NOT_LABEL = re.compile(r"[^a-z0-9]+")


class Metrics(Protocol):
    """Where the client reports its events. An implementation must never raise (a metrics
    backend failing must not fail an extraction) and must be cheap: it is called on every
    request."""

    def incr(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name`` (one of :data:`COUNTERS`)."""

    def timing(self, name: str, seconds: float) -> None:
        """Record a duration of ``seconds`` for the timer ``name`` (one of :data:`TIMERS`)."""


class NoMetrics:
    """Reports nothing: the default of a client built without metrics."""

    def incr(self, name: str, count: int = 1) -> None:
        pass

    def timing(self, name: str, seconds: float) -> None:
        pass


#: The shared no-op instance.
NO_METRICS = NoMetrics()


def account_label(base_url: str) -> str:
    """The account in a metric name: the URL's host and port, lowercased, every run of other
    characters than ``[a-z0-9]`` one ``_`` (``https://acme.ilucca.net`` -> ``acme_ilucca_net``,
    ``http://127.0.0.1:8089`` -> ``127_0_0_1_8089``).

    The whole host, not its first label: ``acme.ilucca.net`` and ``acme.ilucca-demo.net`` are
    different accounts with different budgets. Dots would split the name in StatsD's hierarchy.
    """
    netloc = urlsplit(base_url).netloc.rpartition("@")[2]  # never userinfo (refused anyway)
    label = _NOT_LABEL.sub("_", netloc.lower()).strip("_")
    return label[:ACCOUNT_LABEL_MAX].rstrip("_") or "unknown"
