"""Error answers become typed errors, not retried, with what to fix and never the key."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import requests
import responses

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    LuccaAPIError,
    LuccaAuthError,
    LuccaNotFoundError,
    LuccaRedirectError,
    LuccaRequestError,
    RetryPolicy,
)
from tests.client.conftest import KEY, URL, FakeClock, make_client, page_body


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, LuccaRequestError),
        (401, LuccaAuthError),
        (403, LuccaAuthError),
        (404, LuccaNotFoundError),
        (405, LuccaRequestError),
        (422, LuccaRequestError),
    ],
)
def test_client_errors_are_not_retried_and_carry_problem_details(
    rsps: responses.RequestsMock, status: int, kind: type[LuccaAPIError]
) -> None:
    rsps.get(
        URL,
        status=status,
        json={
            "type": "https://example.com/problem",
            "title": f"Title {status}",
            "status": status,
            "detail": f"Detail for {status}: ownerIds must be integers",
        },
        content_type="application/problem+json",
    )
    rsps.get(URL, json=page_body())  # would be served if the client wrongly retried
    clock = FakeClock()

    with pytest.raises(kind) as info:
        list(make_client(clock).iter_realized_trainings())

    exc = info.value
    assert len(rsps.calls) == 1
    assert clock.sleeps == []
    assert exc.status == status
    assert exc.path == REALIZED_TRAININGS_PATH
    assert exc.title == f"Title {status}"
    assert exc.detail == f"Detail for {status}: ownerIds must be integers"
    message = str(exc)
    assert f"HTTP {status}" in message
    assert REALIZED_TRAININGS_PATH in message
    assert f"Detail for {status}" in message
    assert KEY not in message


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "wrong or revoked"),
        (403, "no rights"),
        (404, "check the account URL"),
    ],
)
def test_auth_and_not_found_messages_say_what_to_fix(
    rsps: responses.RequestsMock, status: int, hint: str
) -> None:
    rsps.get(URL, status=status, body="")
    with pytest.raises(LuccaAPIError, match=hint) as info:
        list(make_client().iter_realized_trainings())
    assert "empty body" in str(info.value)


def test_non_json_error_body_is_kept_as_a_short_excerpt(rsps: responses.RequestsMock) -> None:
    body = "<html><body><h1>Bad request</h1>" + "x" * 5000 + "</body></html>"
    rsps.get(URL, status=400, body=body, content_type="text/html")

    with pytest.raises(LuccaRequestError) as info:
        list(make_client().iter_realized_trainings())

    exc = info.value
    assert exc.title is None
    assert exc.detail is None
    assert exc.body_excerpt is not None
    assert exc.body_excerpt.startswith("<html><body><h1>Bad request</h1>")
    assert len(exc.body_excerpt) <= 200
    assert "<h1>Bad request</h1>" in str(exc)
    assert len(str(exc)) < 500


def test_long_problem_fields_are_truncated(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=422, json={"title": "T" * 1000, "detail": "D" * 1000})
    with pytest.raises(LuccaRequestError) as info:
        list(make_client().iter_realized_trainings())
    assert info.value.title is not None
    assert info.value.detail is not None
    assert len(info.value.title) <= 200
    assert len(info.value.detail) <= 200
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"title": "Unauthorized", "detail": f"key lucca application={KEY} is revoked"}},
        {"body": f"<html>bad key {KEY}</html>"},
    ],
    ids=["problem-json", "html"],
)
def test_a_key_echoed_by_the_server_is_redacted(
    rsps: responses.RequestsMock, body: dict[str, Any]
) -> None:
    rsps.get(URL, status=401, **body)

    with pytest.raises(LuccaAuthError) as info:
        list(make_client().iter_realized_trainings())

    assert KEY not in str(info.value)
    assert KEY not in repr(vars(info.value))
    assert "***" in str(info.value)


def test_the_api_key_never_appears_in_errors_or_logs(
    rsps: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[BaseException] = []
    scenarios: list[Callable[[], None]] = [
        lambda: rsps.get(URL, status=401, json={"title": "Unauthorized"}),
        lambda: rsps.get(URL, status=403, body="forbidden"),
        lambda: rsps.get(URL, status=503),
        lambda: rsps.get(URL, status=429, headers={"Retry-After": "9999"}),
        lambda: rsps.get(URL, body=requests.exceptions.ConnectionError("refused")),
        lambda: rsps.get(URL, status=302, headers={"Location": "https://evil.example/"}),
        lambda: rsps.get(URL, body="<html>oops</html>"),
    ]
    for register in scenarios:
        rsps.reset()
        register()
        client = make_client(retry=RetryPolicy(max_attempts=2, jitter=0))
        with pytest.raises(Exception) as info:  # noqa: PT011 - every kind is checked below
            list(client.iter_realized_trainings())
        failures.append(info.value)
        assert rsps.calls[0].request.headers["Authorization"] == f"lucca application={KEY}"

    assert len(failures) == len(scenarios)
    assert any("retrying" in r.getMessage() for r in caplog.records)
    for exc in failures:
        assert KEY not in str(exc)
        assert KEY not in repr(exc.args)
        if exc.__cause__ is not None:
            assert KEY not in str(exc.__cause__)
    assert KEY not in caplog.text


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_never_followed(rsps: responses.RequestsMock, status: int) -> None:
    rsps.get(URL, status=status, headers={"Location": "https://evil.example/x"})
    evil = rsps.get("https://evil.example/x", json=page_body())
    clock = FakeClock()

    with pytest.raises(LuccaRedirectError) as info:
        list(make_client(clock).iter_realized_trainings())

    assert len(rsps.calls) == 1
    assert evil.call_count == 0
    assert clock.sleeps == []
    assert info.value.status == status
    assert info.value.path == REALIZED_TRAININGS_PATH
    assert "not followed" in str(info.value)
    assert "evil.example" in str(info.value)
