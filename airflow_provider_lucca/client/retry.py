"""The retry policy as a small immutable value, with the clock and randomness left to the caller.

:meth:`RetryPolicy.decide` is the whole retry decision, as a pure function: given one failed
attempt (a :class:`Failure`), how many attempts were made and how long they took, it answers
:class:`Retry` (wait so long, then try again) or :class:`GiveUp` (raise this error). The client
does the I/O around it: sending, classifying the answer, logging, sleeping, counting.
"""

from __future__ import annotations

import email.utils
import enum
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

from airflow_provider_lucca.client.defaults import DEFAULT_MAX_RETRIES
from airflow_provider_lucca.client.errors import (
    LuccaAPIError,
    LuccaRateLimitError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
)

#: Statuses worth another attempt: rate limiting, request timeout and transient server failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class Transport(enum.Enum):
    """A failure without an HTTP answer, by what retrying makes of it."""

    #: The connection could not be opened in time.
    CONNECT_TIMEOUT = "connect timeout"
    #: No answer (or not the whole body) within the read timeout.
    READ_TIMEOUT = "read timeout"
    #: Refused, reset, unknown host, proxy error.
    CONNECTION = "connection error"
    #: The connection dropped in the middle of the body.
    DROPPED = "dropped mid-body"
    #: The certificate could not be verified: never retried, it does not become valid by waiting.
    TLS = "TLS verification failed"


@dataclass(frozen=True)
class Failure:
    """One failed attempt, as the retry decision sees it: an HTTP error answer, or no answer.

    Build it with :meth:`answer` or :meth:`no_answer`.

    :param path: the request path, for messages.
    :param reason: ``HTTP 503``, or the transport error's class name (``ReadTimeout``).
    :param status: the HTTP status; None when no answer came.
    :param transport: the kind of transport error; None for an HTTP answer.
    :param retry_after: the answer's Retry-After, in seconds, if it had a readable one.
    :param error: the error raised as is when this failure is not retried: the classified answer,
        or the TLS error. None for the other transport errors, always worth another attempt.
    :param text: the transport error's message, quoted when the retries run out.
    """

    path: str
    reason: str
    status: int | None = None
    transport: Transport | None = None
    retry_after: float | None = None
    error: LuccaAPIError | None = None
    text: str = ""

    def __post_init__(self) -> None:
        if (self.status is None) == (self.transport is None):
            raise ValueError("a Failure has either an HTTP status or a transport error kind")
        if self.error is None and (self.status is not None or self.transport is Transport.TLS):
            raise ValueError(f"a Failure ({self.reason}) that may not be retried needs its error")

    @classmethod
    def answer(cls, error: LuccaAPIError) -> Failure:
        """An HTTP error answer, classified (status, path and Retry-After are read from it)."""
        if error.status is None:
            raise ValueError("an HTTP answer's error needs its status")
        return cls(
            path=error.path,
            reason=f"HTTP {error.status}",
            status=error.status,
            retry_after=error.retry_after,
            error=error,
        )

    @classmethod
    def no_answer(
        cls,
        path: str,
        kind: Transport,
        name: str,
        text: str = "",
        *,
        error: LuccaAPIError | None = None,
    ) -> Failure:
        """A transport error: ``name`` is its class name, ``error`` what to raise for TLS."""
        return cls(path=path, reason=name, transport=kind, error=error, text=text)


@dataclass(frozen=True)
class Retry:
    """Wait ``wait`` seconds, then make the next attempt.

    :param reason: what failed (``HTTP 429``, ``ReadTimeout``), for the log.
    :param retry_after: True when the wait is the server's Retry-After, not a backoff.
    """

    wait: float
    reason: str
    retry_after: bool = False


@dataclass(frozen=True)
class GiveUp:
    """Stop retrying and raise ``error``.

    The caller chains it to the failure's cause (``raise error from cause``) unless it is the
    classified answer itself, raised as is.
    """

    error: LuccaAPIError


#: What :meth:`RetryPolicy.decide` answers.
Decision = Retry | GiveUp


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often to try again.

    :param max_attempts: attempts per request, the first one included (1 disables retries).
    :param backoff_base: first backoff delay in seconds; doubles on each retry.
    :param backoff_max: ceiling of one backoff delay (does not apply to Retry-After).
    :param jitter: fraction of the delay drawn at random (0 = fixed delays, 1 = full jitter), so
        that several workers hit by the same outage do not retry in lockstep.
    :param retry_after_cap: largest Retry-After honoured, in seconds. A server asking for more gets
        a clear failure instead of a task that silently sleeps for an hour.
    :param max_total_seconds: time budget for one request, all attempts and waits included.
    :param rate_limit_min_wait: shortest wait after a 429 that gives no Retry-After: Lucca's
        limit is per minute, so retrying within seconds would only meet more 429s.
    """

    max_attempts: int = 1 + DEFAULT_MAX_RETRIES
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 0.5
    retry_after_cap: float = 120.0
    max_total_seconds: float = 600.0
    rate_limit_min_wait: float = 10.0
    retryable_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter must be between 0 and 1")
        for name in (
            "backoff_base",
            "backoff_max",
            "retry_after_cap",
            "max_total_seconds",
            "rate_limit_min_wait",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Delay before retry ``retry_number`` (1 = first retry) when there is no Retry-After."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        draw = float((rng or random).random())
        return float(delay * (1.0 - self.jitter * draw))

    def retries(self, failure: Failure) -> bool:
        """Whether this kind of failure is worth another attempt at all, budgets aside."""
        if failure.status is not None:
            return failure.status in self.retryable_statuses
        return failure.transport is not Transport.TLS

    def decide(
        self,
        failure: Failure,
        *,
        attempt: int,
        elapsed: float,
        rng: random.Random | None = None,
    ) -> Decision:
        """Retry after ``failure`` on attempt ``attempt`` (1 = the first), or give up, and why.

        In this order: a failure that is never retried (:meth:`retries`) gives up with its own
        error; a Retry-After above ``retry_after_cap`` gives up at once (rate limit on a 429,
        maintenance otherwise); the wait is the Retry-After, or the jittered backoff (one draw
        from ``rng``) raised to ``rate_limit_min_wait`` on a 429; the retries are exhausted on the
        last attempt or when ``elapsed`` seconds (since the first attempt started) plus the wait
        would overrun ``max_total_seconds``; otherwise, retry.
        """
        if not self.retries(failure):
            assert failure.error is not None  # Failure requires it for these
            return GiveUp(failure.error)
        path, reason, retry_after = failure.path, failure.reason, failure.retry_after
        if retry_after is not None and retry_after > self.retry_after_cap:
            rate_limited = failure.status == 429
            return GiveUp(
                (LuccaRateLimitError if rate_limited else LuccaServerError)(
                    f"GET {path}: {reason} on attempt {attempt} asked to retry after "
                    f"{retry_after:.0f} s, above the cap of {self.retry_after_cap:.0f} s "
                    "(RetryPolicy.retry_after_cap); failing now rather than sleeping. "
                    + (
                        "The tenant's rate budget is probably used by another integration."
                        if rate_limited
                        else "Lucca is probably in maintenance: retry later."
                    ),
                    status=failure.status,
                    path=path,
                    retry_after=retry_after,
                )
            )
        if retry_after is not None:
            wait = retry_after
        else:
            wait = self.backoff(attempt, rng)
            if failure.status == 429:
                # No Retry-After: the tenant's window is a minute, a short backoff would spend the
                # attempts inside it.
                wait = max(wait, self.rate_limit_min_wait)
        if attempt >= self.max_attempts or elapsed + wait > self.max_total_seconds:
            budget = (
                f"{attempt} attempts"
                if attempt >= self.max_attempts
                else f"the {self.max_total_seconds:.0f} s time budget"
            )
            error = failure.error
            return GiveUp(
                LuccaRetriesExhaustedError(
                    f"GET {path} failed after {attempt} attempts in {elapsed:.1f} s "
                    f"({budget} spent); last failure: {reason}"
                    + (f" ({error})" if error else f": {failure.text[:300]}"),
                    attempts=attempt,
                    status=failure.status,
                    path=path,
                    title=error.title if error else None,
                    detail=error.detail if error else None,
                )
            )
        return Retry(wait=wait, reason=reason, retry_after=retry_after is not None)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, or None when absent or unreadable.

    Both RFC 9110 forms are read: delay-seconds and HTTP-date. A date in the past and a negative
    number mean "now" (0). Garbage is ignored (None) so that the caller falls back to its backoff
    rather than trusting a value it cannot read.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    reference = now or datetime.now(timezone.utc)
    return max(0.0, (when - reference).total_seconds())
