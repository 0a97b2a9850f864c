"""RetryPolicy on its own: the retry decision table, backoff, Retry-After parsing (no HTTP).

``RetryPolicy.decide`` is pure: each case below is one failed attempt (an HTTP error answer or a
transport error), the attempt number and the seconds spent, and what the policy answers. The
HTTP-level tests in test_retry_http.py prove the client wires it to real answers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_lucca.client import (
    LuccaAPIError,
    LuccaAuthError,
    LuccaNotFoundError,
    LuccaRateLimitError,
    LuccaRequestError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
    LuccaTLSError,
    RetryPolicy,
    parse_retry_after,
)
from airflow_provider_lucca.client.defaults import DEFAULT_MAX_RETRIES
from airflow_provider_lucca.client.retry import Failure, GiveUp, Retry, Transport

PATH = "/talent-training/api/v2/realized-trainings"
#: The default policy without jitter: 6 attempts, backoff 1 s doubling up to 30 s, Retry-After
#: honoured up to 120 s, 600 s per request, at least 10 s after a 429 without Retry-After.
POLICY = RetryPolicy(jitter=0.0)

_KINDS: dict[int, type[LuccaAPIError]] = {
    401: LuccaAuthError,
    404: LuccaNotFoundError,
    429: LuccaRateLimitError,
}


def answer(status: int, retry_after: float | None = None) -> Failure:
    """An error answer as the client classifies it (problem+json title and detail)."""
    kind = _KINDS.get(status) or (
        LuccaServerError if status >= 500 or status == 408 else LuccaRequestError
    )
    error = kind(
        f"GET {PATH} -> HTTP {status}: Title {status}; Detail {status}",
        status=status,
        path=PATH,
        title=f"Title {status}",
        detail=f"Detail {status}",
        retry_after=retry_after,
    )
    return Failure.answer(error)


def no_answer(kind: Transport, name: str, text: str = "boom") -> Failure:
    error = None
    if kind is Transport.TLS:
        error = LuccaTLSError(f"GET {PATH}: TLS verification of https://x failed ({text}).")
    return Failure.no_answer(PATH, kind, name, text, error=error)


@dataclass(frozen=True)
class Raises:
    """Expected: give up with an error of this type and exactly this message."""

    kind: type[LuccaAPIError]
    message: str


#: Expected: give up with the failure's own error (the classified answer, the TLS error).
ITS_OWN_ERROR = "its own error"

CAP = "(RetryPolicy.retry_after_cap); failing now rather than sleeping. "
RATE_HINT = "The tenant's rate budget is probably used by another integration."
MAINTENANCE_HINT = "Lucca is probably in maintenance: retry later."

DECISIONS: list[tuple[str, Failure, int, float, object]] = [
    # -- 429: Retry-After, the 10 s floor without it, the cap
    ("429 without Retry-After waits the floor", answer(429), 1, 0.0, Retry(10.0, "HTTP 429")),
    ("429 floor under a longer backoff", answer(429), 5, 40.0, Retry(16.0, "HTTP 429")),
    ("429 Retry-After is waited", answer(429, 7.0), 1, 0.0, Retry(7.0, "HTTP 429", True)),
    ("429 Retry-After 0 retries now", answer(429, 0.0), 1, 0.0, Retry(0.0, "HTTP 429", True)),
    ("429 Retry-After at the cap", answer(429, 120.0), 1, 0.0, Retry(120.0, "HTTP 429", True)),
    (
        "429 Retry-After over the cap",
        answer(429, 121.0),
        2,
        5.0,
        Raises(
            LuccaRateLimitError,
            f"GET {PATH}: HTTP 429 on attempt 2 asked to retry after 121 s, above the cap of "
            f"120 s {CAP}{RATE_HINT}",
        ),
    ),
    # -- 503: maintenance
    ("503 backoff", answer(503), 1, 0.0, Retry(1.0, "HTTP 503")),
    ("503 Retry-After is waited", answer(503, 12.0), 1, 0.0, Retry(12.0, "HTTP 503", True)),
    (
        "503 Retry-After over the cap: maintenance",
        answer(503, 3600.0),
        1,
        0.0,
        Raises(
            LuccaServerError,
            f"GET {PATH}: HTTP 503 on attempt 1 asked to retry after 3600 s, above the cap of "
            f"120 s {CAP}{MAINTENANCE_HINT}",
        ),
    ),
    (
        "the cap is checked before the attempts",
        answer(503, 3600.0),
        6,
        0.0,
        Raises(
            LuccaServerError,
            f"GET {PATH}: HTTP 503 on attempt 6 asked to retry after 3600 s, above the cap of "
            f"120 s {CAP}{MAINTENANCE_HINT}",
        ),
    ),
    # -- other retried statuses: backoff from 1 s, doubling
    ("408", answer(408), 1, 0.0, Retry(1.0, "HTTP 408")),
    ("500", answer(500), 2, 1.0, Retry(2.0, "HTTP 500")),
    ("502", answer(502), 3, 3.0, Retry(4.0, "HTTP 502")),
    ("504", answer(504), 4, 7.0, Retry(8.0, "HTTP 504")),
    ("fifth attempt", answer(500), 5, 100.0, Retry(16.0, "HTTP 500")),
    # -- never retried: the classified answer is raised as is
    ("501 not retried", answer(501), 1, 0.0, ITS_OWN_ERROR),
    ("505 not retried", answer(505), 1, 0.0, ITS_OWN_ERROR),
    ("400 not retried", answer(400), 1, 0.0, ITS_OWN_ERROR),
    ("401 not retried", answer(401), 1, 0.0, ITS_OWN_ERROR),
    ("404 not retried", answer(404), 1, 0.0, ITS_OWN_ERROR),
    # -- transport errors
    (
        "connect timeout",
        no_answer(Transport.CONNECT_TIMEOUT, "ConnectTimeout"),
        1,
        0.0,
        Retry(1.0, "ConnectTimeout"),
    ),
    (
        "read timeout",
        no_answer(Transport.READ_TIMEOUT, "ReadTimeout"),
        2,
        1.0,
        Retry(2.0, "ReadTimeout"),
    ),
    (
        "connection reset",
        no_answer(Transport.CONNECTION, "ConnectionError"),
        1,
        0.0,
        Retry(1.0, "ConnectionError"),
    ),
    (
        "dropped mid-body",
        no_answer(Transport.DROPPED, "ChunkedEncodingError"),
        1,
        0.0,
        Retry(1.0, "ChunkedEncodingError"),
    ),
    ("TLS not retried", no_answer(Transport.TLS, "SSLError"), 1, 0.0, ITS_OWN_ERROR),
    # -- the last attempt
    (
        "last attempt on a status",
        answer(503),
        6,
        31.0,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 6 attempts in 31.0 s (6 attempts spent); last failure: "
            f"HTTP 503 (GET {PATH} -> HTTP 503: Title 503; Detail 503)",
        ),
    ),
    (
        "last attempt on a 429 with Retry-After",
        answer(429, 5.0),
        6,
        50.0,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 6 attempts in 50.0 s (6 attempts spent); last failure: "
            f"HTTP 429 (GET {PATH} -> HTTP 429: Title 429; Detail 429)",
        ),
    ),
    (
        "last attempt on a transport error",
        no_answer(Transport.READ_TIMEOUT, "ReadTimeout", "read timed out"),
        6,
        31.04,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 6 attempts in 31.0 s (6 attempts spent); last failure: "
            "ReadTimeout: read timed out",
        ),
    ),
    (
        "a transport error's text is cut at 300 characters",
        no_answer(Transport.CONNECTION, "ConnectionError", "x" * 400),
        6,
        0.0,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 6 attempts in 0.0 s (6 attempts spent); last failure: "
            f"ConnectionError: {'x' * 300}",
        ),
    ),
    # -- the time budget: elapsed + the coming wait must stay within 600 s
    ("a wait that ends on the budget", answer(500), 1, 599.0, Retry(1.0, "HTTP 500")),
    (
        "a wait that would overrun the budget",
        answer(500),
        2,
        598.5,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 2 attempts in 598.5 s (the 600 s time budget spent); "
            f"last failure: HTTP 500 (GET {PATH} -> HTTP 500: Title 500; Detail 500)",
        ),
    ),
    (
        "a Retry-After counts against the budget",
        answer(429, 100.0),
        1,
        550.0,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 1 attempts in 550.0 s (the 600 s time budget spent); "
            f"last failure: HTTP 429 (GET {PATH} -> HTTP 429: Title 429; Detail 429)",
        ),
    ),
    (
        "budget spent on a transport error",
        no_answer(Transport.CONNECT_TIMEOUT, "ConnectTimeout", "timed out"),
        3,
        600.0,
        Raises(
            LuccaRetriesExhaustedError,
            f"GET {PATH} failed after 3 attempts in 600.0 s (the 600 s time budget spent); "
            "last failure: ConnectTimeout: timed out",
        ),
    ),
]


@pytest.mark.parametrize(
    ("case", "failure", "attempt", "elapsed", "expected"), DECISIONS, ids=[c[0] for c in DECISIONS]
)
def test_retry_decision_table(
    case: str, failure: Failure, attempt: int, elapsed: float, expected: object
) -> None:
    decision = POLICY.decide(failure, attempt=attempt, elapsed=elapsed, rng=random.Random(0))
    if isinstance(expected, Retry):
        assert decision == expected
    elif expected == ITS_OWN_ERROR:
        assert isinstance(decision, GiveUp)
        assert decision.error is failure.error
    else:
        assert isinstance(expected, Raises)
        assert isinstance(decision, GiveUp)
        assert type(decision.error) is expected.kind
        assert str(decision.error) == expected.message
        assert decision.error.path == PATH
        assert decision.error.status == failure.status


class CountingRandom(random.Random):
    """Always draws ``value``, and counts the draws."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return self.value


def test_the_default_policy_makes_one_attempt_more_than_the_default_retries() -> None:
    assert RetryPolicy().max_attempts == 1 + DEFAULT_MAX_RETRIES == 6


def test_backoff_stops_doubling_at_its_maximum() -> None:
    policy = RetryPolicy(jitter=0.0, max_attempts=10, max_total_seconds=10_000)
    waits = [policy.decide(answer(503), attempt=n, elapsed=0.0) for n in range(1, 10)]
    assert [w.wait for w in waits if isinstance(w, Retry)] == [1, 2, 4, 8, 16, 30, 30, 30, 30]


def test_jitter_takes_one_draw_per_backoff_and_none_otherwise() -> None:
    """The client's random sequence is the one it had before decide existed: one draw for each
    backoff computed (the last attempt's included), none for a Retry-After or an answer that is
    not retried."""
    policy = RetryPolicy(jitter=0.5)
    rng = CountingRandom(0.5)
    assert policy.decide(answer(503), attempt=3, elapsed=0.0, rng=rng) == Retry(3.0, "HTTP 503")
    assert rng.draws == 1  # 4 s * (1 - 0.5 * 0.5)
    policy.decide(answer(503), attempt=6, elapsed=0.0, rng=rng)
    assert rng.draws == 2
    policy.decide(answer(503, 5.0), attempt=1, elapsed=0.0, rng=rng)
    policy.decide(answer(503, 500.0), attempt=1, elapsed=0.0, rng=rng)
    policy.decide(answer(404), attempt=1, elapsed=0.0, rng=rng)
    policy.decide(no_answer(Transport.TLS, "SSLError"), attempt=1, elapsed=0.0, rng=rng)
    assert rng.draws == 2


def test_the_429_floor_applies_after_the_jitter() -> None:
    policy = RetryPolicy(jitter=1.0, rate_limit_min_wait=10.0)
    decision = policy.decide(answer(429), attempt=1, elapsed=0.0, rng=CountingRandom(0.99))
    assert decision == Retry(10.0, "HTTP 429")


def test_max_attempts_one_gives_up_on_the_first_failure() -> None:
    decision = RetryPolicy(max_attempts=1).decide(answer(500), attempt=1, elapsed=0.0)
    assert isinstance(decision, GiveUp)
    assert isinstance(decision.error, LuccaRetriesExhaustedError)
    assert decision.error.attempts == 1


def test_only_the_policy_statuses_are_retried() -> None:
    policy = RetryPolicy(jitter=0.0, retryable_statuses=frozenset({503}))
    failure = answer(500)
    decision = policy.decide(failure, attempt=1, elapsed=0.0)
    assert isinstance(decision, GiveUp)
    assert decision.error is failure.error
    assert policy.decide(answer(503), attempt=1, elapsed=0.0) == Retry(1.0, "HTTP 503")


def test_giving_up_keeps_what_a_person_needs_on_the_error() -> None:
    exhausted = POLICY.decide(answer(503), attempt=6, elapsed=0.0)
    assert isinstance(exhausted, GiveUp)
    error = exhausted.error
    assert isinstance(error, LuccaRetriesExhaustedError)
    assert (error.attempts, error.status, error.path) == (6, 503, PATH)
    assert (error.title, error.detail) == ("Title 503", "Detail 503")
    transport = POLICY.decide(
        no_answer(Transport.CONNECTION, "ConnectionError"), attempt=6, elapsed=0
    )
    assert isinstance(transport, GiveUp)
    assert isinstance(transport.error, LuccaRetriesExhaustedError)
    assert (transport.error.status, transport.error.title, transport.error.detail) == (
        None,
        None,
        None,
    )
    capped = POLICY.decide(answer(429, 3600.0), attempt=1, elapsed=0.0)
    assert isinstance(capped, GiveUp)
    assert (capped.error.status, capped.error.retry_after) == (429, 3600.0)


def test_decide_is_pure() -> None:
    failure = answer(502)
    first = RetryPolicy().decide(failure, attempt=2, elapsed=3.0, rng=random.Random(42))
    again = RetryPolicy().decide(failure, attempt=2, elapsed=3.0, rng=random.Random(42))
    assert first == again
    assert isinstance(first, Retry)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Failure(path=PATH, reason="nothing"),
        lambda: Failure(path=PATH, reason="both", status=503, transport=Transport.CONNECTION),
        lambda: Failure(path=PATH, reason="HTTP 503", status=503),
        lambda: Failure.no_answer(PATH, Transport.TLS, "SSLError"),
        lambda: Failure.answer(LuccaServerError("no status", path=PATH)),
    ],
    ids=["neither", "both", "status-without-error", "tls-without-error", "answer-without-status"],
)
def test_a_failure_the_decision_could_not_raise_is_refused(make: Any) -> None:
    with pytest.raises(ValueError, match=r"Failure|status"):
        make()


NOW = datetime(2015, 10, 21, 7, 27, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("12", 12.0),
        (" 1.5 ", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("nan", None),
        ("inf", None),
        ("later please", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 60.0),
        ("Wed, 21 Oct 2015 07:20:00 GMT", 0.0),
        ("Wednesday, 21-Oct-15 07:29:00 GMT", 120.0),
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


@given(
    retry_number=st.integers(min_value=1, max_value=20),
    base=st.floats(min_value=0.0, max_value=10.0),
    maximum=st.floats(min_value=0.0, max_value=100.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
@settings(max_examples=100, deadline=None)
def test_backoff_is_bounded_by_policy(
    retry_number: int, base: float, maximum: float, jitter: float, seed: int
) -> None:
    policy = RetryPolicy(backoff_base=base, backoff_max=maximum, jitter=jitter)
    delay = min(maximum, base * 2 ** (retry_number - 1))
    wait = policy.backoff(retry_number, random.Random(seed))
    assert delay * (1 - jitter) - 1e-9 <= wait <= delay + 1e-9


def test_full_jitter_spreads_workers_apart() -> None:
    policy = RetryPolicy(backoff_base=4.0, jitter=1.0)
    rng = random.Random(7)
    draws = [policy.backoff(1, rng) for _ in range(50)]
    assert min(draws) < 2.0 < max(draws) <= 4.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"backoff_base": -1},
        {"retry_after_cap": -1},
        {"max_total_seconds": -1},
    ],
)
def test_invalid_retry_policy_is_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each field has its own message
        RetryPolicy(**kwargs)
