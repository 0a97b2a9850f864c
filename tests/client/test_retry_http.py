"""Retries through HTTP: the client wires RetryPolicy.decide to real answers, waits and logs."""

from __future__ import annotations

import email.utils
import logging
import socket
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests
import responses

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    LuccaAPIError,
    LuccaRateLimitError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
    LuccaTLSError,
    RetryPolicy,
)
from tests.client.conftest import CLIENT_LOGGER, URL, FakeClock, make_client, page_body

RETRIED_FAILURES: list[Any] = [
    429,
    408,
    500,
    502,
    503,
    504,
    requests.exceptions.ConnectionError("connection reset by peer"),
    requests.exceptions.ReadTimeout("read timed out"),
    requests.exceptions.ConnectTimeout("connect timed out"),
    requests.exceptions.ChunkedEncodingError("connection broken: IncompleteRead"),
]


def add_failure(rsps: responses.RequestsMock, failure: Any, **kwargs: Any) -> None:
    if isinstance(failure, int):
        rsps.get(URL, status=failure, json={"title": "transient", "status": failure}, **kwargs)
    else:
        rsps.get(URL, body=failure)


@pytest.mark.parametrize("failure", RETRIED_FAILURES, ids=repr)
def test_transient_failure_is_retried_then_succeeds(
    rsps: responses.RequestsMock, failure: Any
) -> None:
    add_failure(rsps, failure)
    rsps.get(URL, json=page_body([{"id": 1}], count=1))
    clock = FakeClock()
    client = make_client(clock)

    pages = list(client.iter_realized_trainings())

    assert [p.items for p in pages] == [[{"id": 1}]]
    assert len(rsps.calls) == 2
    # backoff_base with no jitter; a 429 without Retry-After waits at least rate_limit_min_wait
    assert clock.sleeps == [10.0 if failure == 429 else 1.0]
    assert client.stats.retries == 1


def test_a_429_without_retry_after_waits_out_most_of_the_minute(
    rsps: responses.RequestsMock,
) -> None:
    for _ in range(5):
        rsps.get(URL, status=429)
    rsps.get(URL, json=page_body([{"id": 1}], count=1))
    clock = FakeClock()

    list(make_client(clock).iter_realized_trainings())

    assert clock.sleeps == [10.0, 10.0, 10.0, 10.0, 16.0]  # max(backoff, 10 s)
    assert sum(clock.sleeps) >= 55  # the default 5 retries span Lucca's one-minute window


def test_connection_dropped_mid_body_is_retried() -> None:
    """A 200 whose body is cut short (IncompleteRead) is retried, not raised raw or half-parsed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    port = server.getsockname()[1]
    hits: list[bytes] = []

    def serve() -> None:
        good = b'{"items":[{"id":1}],"next":null,"count":1}'
        for answer in (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n"
            b'{"items":[{"id"',
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(good)}\r\n\r\n".encode()
            + good,
        ):
            conn, _ = server.accept()
            hits.append(conn.recv(65536))
            conn.sendall(answer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    clock = FakeClock()
    try:
        client = make_client(clock, base_url=f"http://127.0.0.1:{port}", timeout=5.0)
        pages = list(client.iter_realized_trainings())
    finally:
        thread.join(timeout=5)
        server.close()
    assert [p.items for p in pages] == [[{"id": 1}]]
    assert len(hits) == 2
    assert clock.sleeps == [1.0]


@pytest.mark.parametrize(
    ("header", "expected_wait"),
    [("7", 7.0), ("2.5", 2.5), ("0", None), ("-5", None), ("soon", 10.0), ("", 10.0)],
)
def test_retry_after_seconds_is_honoured(
    rsps: responses.RequestsMock, header: str, expected_wait: float | None
) -> None:
    """Seconds are waited exactly; 0 and negative retry at once; garbage counts as no
    Retry-After: a 429 then waits ``rate_limit_min_wait``."""
    rsps.get(URL, status=429, headers={"Retry-After": header})
    rsps.get(URL, json=page_body())
    clock = FakeClock()

    list(make_client(clock).iter_realized_trainings())

    assert len(rsps.calls) == 2
    assert clock.sleeps == ([] if expected_wait is None else [expected_wait])


def test_retry_after_is_honoured_on_503_too(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=503, headers={"Retry-After": "12"})
    rsps.get(URL, json=page_body())
    clock = FakeClock()
    list(make_client(clock).iter_realized_trainings())
    assert clock.sleeps == [12.0]


def test_retry_after_http_date_is_honoured(rsps: responses.RequestsMock) -> None:
    when = datetime.now(timezone.utc) + timedelta(seconds=30)
    rsps.get(URL, status=429, headers={"Retry-After": email.utils.format_datetime(when, True)})
    rsps.get(URL, json=page_body())
    clock = FakeClock()
    list(make_client(clock).iter_realized_trainings())
    assert len(clock.sleeps) == 1
    assert 27.0 < clock.sleeps[0] <= 30.0


def test_retry_after_above_the_cap_fails_at_once_without_sleeping(
    rsps: responses.RequestsMock,
) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "3600"})
    rsps.get(URL, json=page_body())
    clock = FakeClock()

    with pytest.raises(LuccaRateLimitError) as info:
        list(make_client(clock, retry=RetryPolicy(retry_after_cap=120)).iter_realized_trainings())

    assert len(rsps.calls) == 1
    assert clock.sleeps == []
    assert info.value.status == 429
    assert info.value.retry_after == 3600
    assert info.value.path == REALIZED_TRAININGS_PATH
    assert "3600 s" in str(info.value)
    assert "cap of 120 s" in str(info.value)


@pytest.mark.parametrize(
    ("status", "error", "hint"),
    [(429, LuccaRateLimitError, "rate budget"), (503, LuccaServerError, "maintenance")],
)
def test_retry_after_http_date_far_away_fails_at_once(
    rsps: responses.RequestsMock, status: int, error: type[Exception], hint: str
) -> None:
    when = datetime.now(timezone.utc) + timedelta(hours=2)
    rsps.get(URL, status=status, headers={"Retry-After": email.utils.format_datetime(when, True)})
    clock = FakeClock()
    with pytest.raises(error, match=hint):
        list(make_client(clock).iter_realized_trainings())
    assert clock.sleeps == []
    assert len(rsps.calls) == 1


def test_exponential_backoff_doubles_up_to_its_maximum(rsps: responses.RequestsMock) -> None:
    for _ in range(5):
        rsps.get(URL, status=503)
    rsps.get(URL, json=page_body())
    clock = FakeClock()
    policy = RetryPolicy(backoff_base=1.0, backoff_max=5.0, jitter=0.0, max_attempts=6)

    list(make_client(clock, retry=policy).iter_realized_trainings())

    assert clock.sleeps == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jittered_backoff_stays_within_the_policy_bounds(rsps: responses.RequestsMock) -> None:
    for _ in range(5):
        rsps.get(URL, status=502)
    rsps.get(URL, json=page_body())
    clock = FakeClock()
    policy = RetryPolicy(backoff_base=2.0, backoff_max=60.0, jitter=0.5, max_attempts=6)

    list(make_client(clock, retry=policy).iter_realized_trainings())

    nominal = [2.0, 4.0, 8.0, 16.0, 32.0]
    assert len(clock.sleeps) == 5
    for waited, delay in zip(clock.sleeps, nominal, strict=True):
        assert delay * 0.5 <= waited <= delay
    assert len(set(clock.sleeps)) == 5
    assert clock.sleeps == sorted(clock.sleeps)  # bounds [d/2, d] of doubling delays never overlap


def test_retries_exhausted_on_status(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=503, json={"title": "Service Unavailable", "detail": "maintenance"})
    clock = FakeClock()

    with pytest.raises(LuccaRetriesExhaustedError) as info:
        list(
            make_client(
                clock, retry=RetryPolicy(max_attempts=3, jitter=0)
            ).iter_realized_trainings()
        )

    exc = info.value
    assert isinstance(exc, LuccaAPIError)
    assert len(rsps.calls) == 3
    assert clock.sleeps == [1.0, 2.0]  # no sleep after the last attempt
    assert exc.attempts == 3
    assert exc.status == 503
    assert exc.path == REALIZED_TRAININGS_PATH
    assert exc.title == "Service Unavailable"
    assert exc.detail == "maintenance"
    assert isinstance(exc.__cause__, LuccaAPIError)
    message = str(exc)
    assert REALIZED_TRAININGS_PATH in message
    assert "3 attempts" in message
    assert "HTTP 503" in message


def test_retries_exhausted_on_network_errors(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, body=requests.exceptions.ConnectionError("Name or service not known"))
    clock = FakeClock()

    with pytest.raises(LuccaRetriesExhaustedError) as info:
        list(
            make_client(
                clock, retry=RetryPolicy(max_attempts=2, jitter=0)
            ).iter_realized_trainings()
        )

    assert len(rsps.calls) == 2
    assert info.value.attempts == 2
    assert info.value.status is None
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)
    assert "ConnectionError" in str(info.value)
    assert "Name or service not known" in str(info.value)


def test_max_attempts_one_disables_retries(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=500)
    clock = FakeClock()
    with pytest.raises(LuccaRetriesExhaustedError):
        list(make_client(clock, retry=RetryPolicy(max_attempts=1)).iter_realized_trainings())
    assert len(rsps.calls) == 1
    assert clock.sleeps == []


def test_total_time_budget_stops_retrying(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=503)
    clock = FakeClock()
    policy = RetryPolicy(max_attempts=10, backoff_base=4.0, jitter=0.0, max_total_seconds=10.0)

    with pytest.raises(LuccaRetriesExhaustedError) as info:
        list(make_client(clock, retry=policy).iter_realized_trainings())

    # waits 4 (t=4 <= 10), then 8 would reach t=12 > 10: stop after 2 attempts, never overshoot
    assert clock.sleeps == [4.0]
    assert len(rsps.calls) == 2
    assert info.value.attempts == 2
    assert "10 s time budget" in str(info.value)


def test_time_spent_in_slow_requests_counts_against_the_budget(
    rsps: responses.RequestsMock,
) -> None:
    clock = FakeClock()

    def slow_503(request: Any) -> tuple[int, dict[str, str], str]:
        clock.now += 6.0  # the server takes 6 s to fail
        return 503, {}, ""

    rsps.add_callback(responses.GET, URL, callback=slow_503)
    policy = RetryPolicy(max_attempts=10, backoff_base=1.0, jitter=0.0, max_total_seconds=10.0)

    with pytest.raises(LuccaRetriesExhaustedError):
        list(make_client(clock, retry=policy).iter_realized_trainings())

    assert len(rsps.calls) == 2
    assert clock.now - 1000.0 <= 13.0


def test_each_retry_logs_a_warning_with_status_and_wait(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=CLIENT_LOGGER)
    rsps.get(URL, status=503)
    rsps.get(URL, status=429, headers={"Retry-After": "7"})
    rsps.get(URL, body=requests.exceptions.ReadTimeout("slow"))
    rsps.get(URL, json=page_body())

    list(make_client().iter_realized_trainings())

    records = [r for r in caplog.records if r.name == CLIENT_LOGGER]
    assert [r.levelno for r in records] == [logging.WARNING] * 3
    first, second, third = (r.getMessage() for r in records)
    assert "HTTP 503 on attempt 1/6, retrying in 1.0 s" in first
    assert "HTTP 429 on attempt 2/6, retrying in 7.0 s (Retry-After)" in second
    assert "ReadTimeout on attempt 3/6, retrying in 4.0 s" in third
    assert all(REALIZED_TRAININGS_PATH in m for m in (first, second, third))


def test_a_tls_failure_is_raised_at_once_chained_to_its_cause(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, body=requests.exceptions.SSLError("certificate verify failed"))
    rsps.get(URL, json=page_body())  # would be served if the client wrongly retried
    clock = FakeClock()

    with pytest.raises(LuccaTLSError) as info:
        list(make_client(clock).iter_realized_trainings())

    assert len(rsps.calls) == 1
    assert clock.sleeps == []
    assert isinstance(info.value.__cause__, requests.exceptions.SSLError)
    assert str(info.value) == (
        f"GET {REALIZED_TRAININGS_PATH}: TLS verification of https://acme.ilucca.net failed "
        "(certificate verify failed). Lucca's certificates are publicly trusted: check the "
        "account URL. Not retried, and verification is never switched off."
    )


def test_an_answer_not_retried_is_raised_as_classified(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=501, json={"title": "Not Implemented"})

    with pytest.raises(LuccaServerError) as info:
        list(make_client().iter_realized_trainings())

    assert len(rsps.calls) == 1
    assert info.value.__cause__ is None
    assert str(info.value) == (
        f"GET {REALIZED_TRAININGS_PATH} -> HTTP 501 Not Implemented: Not Implemented"
    )
