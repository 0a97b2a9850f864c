"""The retry policy as a small immutable value, with the clock and randomness left to the caller."""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone

from airflow_provider_lucca.client.defaults import DEFAULT_MAX_RETRIES

#: Statuses worth another attempt: rate limiting, request timeout and transient server failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


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
