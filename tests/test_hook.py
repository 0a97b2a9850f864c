"""LuccaHook with Airflow: connection -> client config, the UI Test button, provider discovery.

Connections come from ``AIRFLOW_CONN_<ID>`` environment variables (outside a running task,
``BaseHook.get_connection`` does not read the metadata DB). HTTP is mocked with ``responses``
except for the refused-connection case, which uses a real closed port on loopback.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_lucca import __version__, get_provider_info
from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaConfigError,
    LuccaRetriesExhaustedError,
    RetryPolicy,
)
from airflow_provider_lucca.client.defaults import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TIMEOUT,
    MAX_RETRIES_RANGE,
    PAGE_SIZE_RANGE,
    REQUESTS_PER_MINUTE_RANGE,
    TIMEOUT_RANGE,
)
from airflow_provider_lucca.hooks.lucca import LuccaHook
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY

BASE = "https://acme.ilucca.net"
URL = BASE + REALIZED_TRAININGS_PATH
KEY = "hook-test-lucca-api-key-5d2e81"
CONN_ID = "lucca_test"
EXTRA_FIELDS = ("requests_per_minute", "page_size", "timeout", "max_retries", "allow_plain_http")

SetConn = Callable[..., None]


@pytest.fixture(autouse=True)
def _airflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


@pytest.fixture
def set_conn(monkeypatch: pytest.MonkeyPatch) -> SetConn:
    """Define connection ``conn_id`` as a JSON ``AIRFLOW_CONN_*`` variable."""

    def _set(conn_id: str = CONN_ID, **fields: Any) -> None:
        payload: dict[str, Any] = {"conn_type": "lucca", "host": BASE, "password": KEY}
        payload.update(fields)
        payload = {k: v for k, v in payload.items() if v is not None}
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(payload))

    return _set


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- connection -> ClientConfig --------------------------------------------------------------------


def test_defaults_from_a_minimal_connection(set_conn: SetConn) -> None:
    set_conn(host="acme.ilucca.net")
    config = LuccaHook(CONN_ID).client_config
    assert config.base_url == BASE
    assert config.api_key == KEY
    assert config.requests_per_minute == 50
    assert config.page_size == 100
    assert config.timeout == 30
    assert config.retry.max_attempts == 6
    assert config.allow_plain_http is False


def test_default_connection_id_is_lucca_default(set_conn: SetConn) -> None:
    set_conn("lucca_default", host="https://other.ilucca.net/")
    assert LuccaHook().client_config.base_url == "https://other.ilucca.net"


@pytest.mark.parametrize(
    "extra",
    [
        {"requests_per_minute": 20, "page_size": 25, "timeout": 12, "max_retries": 3},
        {"requests_per_minute": "20", "page_size": "25", "timeout": " 12 ", "max_retries": "3"},
        {"requests_per_minute": 20.0, "page_size": "25.0", "timeout": 12, "max_retries": 3.0},
    ],
)
def test_extras_as_ints_or_strings(set_conn: SetConn, extra: dict[str, Any]) -> None:
    set_conn(extra=extra)
    config = LuccaHook(CONN_ID).client_config
    assert config.requests_per_minute == 20
    assert config.page_size == 25
    assert config.timeout == 12
    assert config.retry.max_attempts == 4


@pytest.mark.parametrize("blank", ["", None])
def test_blank_extras_fall_back_to_defaults(set_conn: SetConn, blank: str | None) -> None:
    set_conn(extra=dict.fromkeys(EXTRA_FIELDS, blank))
    config = LuccaHook(CONN_ID).client_config
    assert (config.requests_per_minute, config.page_size, config.timeout) == (50, 100, 30)
    assert config.retry.max_attempts == 6
    assert config.allow_plain_http is False


def test_zero_pacing_and_zero_retries_are_honoured(set_conn: SetConn) -> None:
    set_conn(extra={"requests_per_minute": "0", "max_retries": 0})
    config = LuccaHook(CONN_ID).client_config
    assert config.requests_per_minute == 0
    assert config.retry.max_attempts == 1


@pytest.mark.parametrize("flag", [True, "true", "True", "1", "yes"])
def test_allow_plain_http_extra_lets_a_private_sandbox_through(
    set_conn: SetConn, flag: object
) -> None:
    set_conn(host="http://lucca-sandbox:8080", extra={"allow_plain_http": flag})
    assert LuccaHook(CONN_ID).client_config.base_url == "http://lucca-sandbox:8080"


def test_plain_http_to_a_remote_host_is_refused_naming_the_connection(set_conn: SetConn) -> None:
    set_conn(host="http://acme.ilucca.net")
    with pytest.raises(LuccaConfigError) as info:
        _ = LuccaHook(CONN_ID).client_config
    assert repr(CONN_ID) in str(info.value)
    assert "plain http" in str(info.value)
    assert KEY not in str(info.value)


def test_host_without_scheme_uses_schema_and_port_fields(set_conn: SetConn) -> None:
    set_conn(host="127.0.0.1", schema="http", port=8080)
    assert LuccaHook(CONN_ID).client_config.base_url == "http://127.0.0.1:8080"


def test_explicit_retry_policy_overrides_the_connection(set_conn: SetConn) -> None:
    set_conn(extra={"max_retries": 10})
    policy = RetryPolicy(max_attempts=2)
    assert LuccaHook(CONN_ID, retry_policy=policy).client_config.retry is policy


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"host": None}, "has no Host"),
        ({"host": ""}, "has no Host"),
        ({"password": None}, "has no Password"),
        ({"password": ""}, "has no Password"),
    ],
)
def test_missing_host_or_key_names_the_connection(
    set_conn: SetConn, fields: dict[str, Any], fragment: str
) -> None:
    set_conn(**fields)
    with pytest.raises(LuccaConfigError) as info:
        _ = LuccaHook(CONN_ID).client_config
    message = str(info.value)
    assert f"Connection {CONN_ID!r}" in message
    assert fragment in message


@pytest.mark.parametrize(
    ("name", "value", "bounds"),
    [
        ("page_size", 0, "an integer from 1 to 100"),
        ("page_size", 101, "an integer from 1 to 100"),
        ("page_size", "abc", "an integer from 1 to 100"),
        ("page_size", True, "an integer from 1 to 100"),
        ("page_size", 2.5, "an integer from 1 to 100"),
        ("max_retries", -1, "an integer from 0 to 20"),
        ("max_retries", 21, "an integer from 0 to 20"),
        ("max_retries", "many", "an integer from 0 to 20"),
        ("requests_per_minute", -1, "an integer from 0 to 6000"),
        ("requests_per_minute", "fast", "an integer from 0 to 6000"),
        ("timeout", 0, "a number of seconds from 1 to 300"),
        ("timeout", "30s", "a number of seconds from 1 to 300"),
        ("timeout", True, "a number of seconds from 1 to 300"),
        ("allow_plain_http", "maybe", "true or false"),
    ],
)
def test_bad_extra_names_the_connection_the_field_and_the_value(
    set_conn: SetConn, name: str, value: object, bounds: str
) -> None:
    set_conn(extra={name: value})
    with pytest.raises(LuccaConfigError) as info:
        _ = LuccaHook(CONN_ID).client_config
    message = str(info.value)
    assert f"Connection {CONN_ID!r}" in message
    assert f"extra {name}={value!r} is invalid" in message
    assert bounds in message


def test_hook_client_uses_the_connection_settings(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn(extra={"page_size": 2, "requests_per_minute": 0})
    rsps.get(URL, json={"items": [{"id": 1}, {"id": 2}], "next": "c1", "count": 3})
    rsps.get(URL, json={"items": [{"id": 3}], "next": None, "count": 3})

    pages = list(LuccaHook(CONN_ID).iter_realized_trainings(owner_ids=[416]))

    assert [item["id"] for page in pages for item in page.items] == [1, 2, 3]
    for call in rsps.calls:
        assert call.request.headers["Authorization"] == f"lucca application={KEY}"
        query = parse_qsl(urlsplit(call.request.url).query)
        assert ("limit", "2") in query
        assert ("ownerIds", "416") in query


def test_hook_honours_max_retries_from_the_connection(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn(extra={"max_retries": 0, "requests_per_minute": 0})
    rsps.get(URL, status=503)
    with pytest.raises(LuccaRetriesExhaustedError):
        list(LuccaHook(CONN_ID).iter_realized_trainings())
    assert len(rsps.calls) == 1


def test_hook_validates_filters_before_any_request(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn()
    with pytest.raises(LuccaConfigError, match="owner_ids"):
        LuccaHook(CONN_ID).iter_realized_trainings(owner_ids="416")
    assert len(rsps.calls) == 0


# -- test_connection -------------------------------------------------------------------------------


def test_test_connection_success_reports_the_count(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn(host="acme.ilucca.net")
    rsps.get(URL, json={"items": [{"id": 1}], "count": 1234})

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is True
    assert "1234 realized trainings" in message
    assert BASE in message
    assert KEY not in message
    assert len(rsps.calls) == 1
    request = rsps.calls[0].request
    assert request.headers["Authorization"] == f"lucca application={KEY}"
    assert sorted(parse_qsl(urlsplit(request.url).query)) == [
        ("fields.root", "count"),
        ("limit", "1"),
    ]


def test_test_connection_without_count_still_succeeds(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn()
    rsps.get(URL, json={"items": []})
    ok, message = LuccaHook(CONN_ID).test_connection()
    assert ok is True
    assert "unknown number of realized trainings" in message


@pytest.mark.parametrize(
    ("status", "fragments"),
    [
        (401, ["HTTP 401", "wrong or revoked"]),
        (403, ["HTTP 403", "no rights", "API keys admin"]),
        (404, ["HTTP 404", "check the account URL"]),
        (400, ["HTTP 400", "ownerIds is invalid"]),
    ],
)
def test_test_connection_explains_refusals(
    set_conn: SetConn, rsps: responses.RequestsMock, status: int, fragments: list[str]
) -> None:
    set_conn()
    rsps.get(URL, status=status, json={"title": "Refused", "detail": "ownerIds is invalid"})

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    for fragment in fragments:
        assert fragment in message
    assert KEY not in message
    assert len(rsps.calls) == 1  # refusals are final, not retried


def test_test_connection_refused_connection(set_conn: SetConn) -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    set_conn(host=base, extra={"requests_per_minute": 0})

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    assert f"Cannot reach {base}" in message
    assert "check the account URL" in message
    assert KEY not in message


@pytest.mark.parametrize(
    ("failure", "fragment"),
    [
        (requests.exceptions.ReadTimeout("read timed out"), "did not answer within 12 s"),
        (requests.exceptions.ConnectTimeout("connect timed out"), "Timed out connecting to"),
        (
            requests.exceptions.ConnectionError("Name or service not known"),
            "unknown host or refused connection",
        ),
    ],
    ids=["read-timeout", "connect-timeout", "unknown-host"],
)
def test_test_connection_network_failures(
    set_conn: SetConn, rsps: responses.RequestsMock, failure: Exception, fragment: str
) -> None:
    set_conn(extra={"requests_per_minute": 0, "max_retries": 20, "timeout": 12})
    rsps.get(URL, body=failure)

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    assert fragment in message
    assert BASE in message
    assert KEY not in message
    # the Test button uses its own short retry budget, not the connection's 20 retries, but the
    # connection's timeout: it tests what the tasks will use
    assert len(rsps.calls) == 2
    assert rsps.calls[0].request.req_kwargs["timeout"] == (10.0, 12.0)


def test_test_connection_does_not_sleep_on_a_long_retry_after(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn(extra={"requests_per_minute": 0})
    rsps.get(URL, status=429, headers={"Retry-After": "3600"})

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    assert "3600 s" in message
    assert len(rsps.calls) == 1


def test_test_connection_server_errors(set_conn: SetConn, rsps: responses.RequestsMock) -> None:
    set_conn(extra={"requests_per_minute": 0, "max_retries": 20})
    rsps.get(URL, status=503, json={"title": "Service Unavailable"})

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    assert "HTTP 503" in message
    assert "Service Unavailable" in message
    assert len(rsps.calls) == 2


def test_test_connection_unexpected_answer(set_conn: SetConn, rsps: responses.RequestsMock) -> None:
    set_conn()
    rsps.get(URL, body="<html>Sign in</html>", content_type="text/html")
    ok, message = LuccaHook(CONN_ID).test_connection()
    assert ok is False
    assert "Unexpected answer from https://acme.ilucca.net" in message
    assert "not JSON" in message


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"host": None}, "has no Host"),
        ({"password": None}, "has no Password"),
        ({"extra": {"page_size": 500}}, "page_size=500"),
        ({"host": "http://acme.ilucca.net"}, "plain http"),
    ],
)
def test_test_connection_reports_bad_settings_without_a_request(
    set_conn: SetConn, rsps: responses.RequestsMock, fields: dict[str, Any], fragment: str
) -> None:
    set_conn(**fields)
    ok, message = LuccaHook(CONN_ID).test_connection()
    assert ok is False
    assert repr(CONN_ID) in message
    assert fragment in message
    assert KEY not in message
    assert len(rsps.calls) == 0


# -- settings refused before any request, for a task and for the Test button -----------------------
#
# These run against the real sandbox: its request counter proves that nothing reached a server.

UNRETRIED = {"requests_per_minute": 0, "max_retries": 0}


def refused_before_any_request(sandbox: SandboxServer, *fragments: str, secret: str = KEY) -> str:
    """Connection ``CONN_ID`` fails with a LuccaConfigError naming it and ``fragments``, in a task
    and in the Test button alike, and no request reached the sandbox."""
    with pytest.raises(LuccaConfigError) as info:
        list(LuccaHook(CONN_ID).iter_realized_trainings())
    message = str(info.value)
    ok, tested = LuccaHook(CONN_ID).test_connection()
    assert ok is False
    assert tested == message
    assert message.startswith(f"Connection {CONN_ID!r}")
    for fragment in fragments:
        assert fragment in message
    assert secret not in message
    assert sandbox.stats()["requests"] == 0
    return message


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        ({"timeout": 10**12}, ["extra timeout=1000000000000 is invalid", "from 1 to 300"]),
        ({"timeout": "1e20"}, ["extra timeout='1e20' is invalid", "seconds from 1 to 300"]),
        ({"timeout": 301}, ["extra timeout=301 is invalid", "from 1 to 300"]),
        ({"timeout": 0.5}, ["extra timeout=0.5 is invalid", "from 1 to 300"]),
        ({"timeout": "nan"}, ["extra timeout='nan' is invalid", "from 1 to 300"]),
        ({"timeout": "inf"}, ["extra timeout='inf' is invalid", "from 1 to 300"]),
        (
            {"requests_per_minute": "1e300"},
            ["extra requests_per_minute='1e300' is invalid", "an integer from 0 to 6000"],
        ),
        ({"requests_per_minute": 6001}, ["extra requests_per_minute=6001", "from 0 to 6000"]),
        ({"requests_per_minute": "-inf"}, ["extra requests_per_minute='-inf'", "from 0 to 6000"]),
        ({"page_size": "1e300"}, ["extra page_size='1e300' is invalid", "from 1 to 100"]),
        ({"max_retries": "1e300"}, ["extra max_retries='1e300' is invalid", "from 0 to 20"]),
    ],
)
def test_absurd_extras_are_refused_before_any_request(
    set_conn: SetConn, sandbox: SandboxServer, extra: dict[str, Any], fragments: list[str]
) -> None:
    """timeout=10**12 used to raise OverflowError at the first request; requests_per_minute=1e300
    silently turned pacing off."""
    set_conn(host=sandbox.url, password=SANDBOX_KEY, extra={**UNRETRIED, **extra})
    refused_before_any_request(sandbox, *fragments, secret=SANDBOX_KEY)


def test_extras_at_their_bounds_are_accepted(set_conn: SetConn) -> None:
    set_conn(extra={"timeout": "300", "requests_per_minute": 6000, "max_retries": 20})
    config = LuccaHook(CONN_ID).client_config
    assert (config.timeout, config.requests_per_minute) == (300, 6000)
    assert config.retry.max_attempts == 21
    set_conn(extra={"timeout": 1, "requests_per_minute": 0})
    assert LuccaHook(CONN_ID).client_config.timeout == 1
    set_conn(extra={"timeout": 2.5})  # seconds may be fractional
    assert LuccaHook(CONN_ID).client_config.timeout == 2.5


@pytest.mark.parametrize("timeout", [10**12, 301, "1e20"])
def test_the_test_button_fails_on_a_timeout_the_task_would_fail_on(
    set_conn: SetConn, sandbox: SandboxServer, timeout: object
) -> None:
    """The Test button used its own 10 s timeout, so it said "Connected" for a connection whose
    every task then failed."""
    set_conn(host=sandbox.url, password=SANDBOX_KEY, extra={"timeout": timeout, **UNRETRIED})

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    assert message.startswith(f"Connection {CONN_ID!r}: extra timeout={timeout!r} is invalid")
    assert "from 1 to 300" in message
    assert SANDBOX_KEY not in message
    assert sandbox.stats()["requests"] == 0


def test_the_test_button_uses_the_connections_timeout(
    set_conn: SetConn, rsps: responses.RequestsMock
) -> None:
    set_conn(extra={"timeout": 45, "requests_per_minute": 0})
    rsps.get(URL, json={"items": [], "count": 0})
    ok, _ = LuccaHook(CONN_ID).test_connection()
    assert ok is True
    assert rsps.calls[0].request.req_kwargs["timeout"] == (10.0, 45.0)


def test_the_test_button_succeeds_against_the_sandbox_with_valid_settings(
    set_conn: SetConn, sandbox: SandboxServer
) -> None:
    # The control case of the tests above: the same connection with sane settings does connect.
    set_conn(host=sandbox.url, password=SANDBOX_KEY, extra={"timeout": 300, **UNRETRIED})
    ok, message = LuccaHook(CONN_ID).test_connection()
    assert ok is True, message
    assert sandbox.stats()["requests"] == 1


@pytest.mark.parametrize(
    ("key", "fragments"),
    [
        (SANDBOX_KEY + "\u200b", ["(U+200B ZERO WIDTH SPACE) at position 16 of 16"]),
        ("sandbox\u2019s-api-key", ["(U+2019 RIGHT SINGLE QUOTATION MARK) at position 8 of"]),
        ("sandbox api-key", ["a space (U+0020) at position 8 of"]),
        ("sandbox-api-k\u00e9y", ["(U+00E9 LATIN SMALL LETTER E WITH ACUTE)"]),
    ],
    ids=["zero-width-space", "typographic-apostrophe", "space-inside", "accented-letter"],
)
def test_a_key_that_is_not_printable_ascii_is_refused_before_any_request(
    set_conn: SetConn, sandbox: SandboxServer, key: str, fragments: list[str]
) -> None:
    """requests encodes headers as latin-1: such a key used to raise UnicodeEncodeError at the
    first request (or, with a space, be sent and answered 401)."""
    set_conn(host=sandbox.url, password=key, extra=UNRETRIED)
    message = refused_before_any_request(
        sandbox, "The Lucca API key contains ", *fragments, "paste the key again", secret=key
    )
    assert "sandbox" not in message.removeprefix(f"Connection {CONN_ID!r}")


@pytest.mark.parametrize(
    "extra",
    ["[1, 2]", "not json", "{'timeout': 30}", '"timeout=30"', "5", "true"],
    ids=["list", "not-json", "python-dict", "string", "number", "boolean"],
)
def test_an_extra_that_is_not_a_json_object_is_refused_before_any_request(
    set_conn: SetConn, sandbox: SandboxServer, extra: str
) -> None:
    """A list used to raise AttributeError; text that is not JSON was logged by Airflow and the
    hook ran with the default settings (dropping the pacing)."""
    set_conn(host=sandbox.url, password=SANDBOX_KEY, extra=extra)
    refused_before_any_request(
        sandbox,
        "extra must be a JSON object",
        '{"requests_per_minute": 50, "page_size": 100, "timeout": 30, "max_retries": 5}',
        secret=SANDBOX_KEY,
    )


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("request_per_minute", "did you mean 'requests_per_minute'?"),
        ("Timeout", "did you mean 'timeout'?"),
        ("extra__lucca__page_size", "did you mean 'page_size'?"),
        ("verify", None),
    ],
)
def test_an_unknown_extra_key_is_refused_with_the_known_keys(
    set_conn: SetConn, sandbox: SandboxServer, key: str, hint: str | None
) -> None:
    """A typo used to be ignored: the hook silently kept the default for the setting meant."""
    set_conn(host=sandbox.url, password=SANDBOX_KEY, extra={key: 10, "requests_per_minute": 0})
    message = refused_before_any_request(
        sandbox,
        f"unknown extra key {key!r}",
        "known keys: allow_plain_http, max_retries, page_size, requests_per_minute, timeout",
        secret=SANDBOX_KEY,
    )
    if hint:
        assert hint in message


@pytest.mark.parametrize("extra", [None, "", "{}", "null", "  "])
def test_no_extra_means_the_defaults(set_conn: SetConn, extra: str | None) -> None:
    set_conn(extra=extra)
    config = LuccaHook(CONN_ID).client_config
    assert (config.requests_per_minute, config.page_size, config.timeout) == (50, 100, 30)


@pytest.mark.parametrize(
    ("host", "fragments"),
    [
        ("https://acme..ilucca.net", ["Invalid host", "label 2 is empty"]),
        ("acme..ilucca.net", ["Invalid host", "label 2 is empty"]),
        ("https://-acme.ilucca.net", ["label 1 starts or ends with a hyphen"]),
        ("http://127.0.0.1:0", ["port 0", "expected a port from 1 to 65535"]),
        ("http://127.0.0.1:65536", ["expected a port from 1 to 65535"]),
    ],
)
def test_a_bad_host_is_refused_before_any_request(
    set_conn: SetConn, sandbox: SandboxServer, host: str, fragments: list[str]
) -> None:
    """``acme..ilucca.net`` used to fail at the first request with LocationParseError, and port 0
    was dropped silently (the task then called port 80)."""
    set_conn(host=host, password=SANDBOX_KEY, extra=UNRETRIED)
    refused_before_any_request(
        sandbox, *fragments, "e.g. https://acme.ilucca.net", secret=SANDBOX_KEY
    )


@pytest.mark.parametrize("port", [70000, -1, 65536])
def test_a_bad_port_field_is_refused_naming_the_field(
    set_conn: SetConn, sandbox: SandboxServer, port: int
) -> None:
    set_conn(host="127.0.0.1", schema="http", port=port, password=SANDBOX_KEY, extra=UNRETRIED)
    refused_before_any_request(
        sandbox,
        f"its Port field is {port}",
        "expected a port from 1 to 65535",
        secret=SANDBOX_KEY,
    )


def test_a_port_field_that_contradicts_the_hosts_own_port_is_refused(
    set_conn: SetConn, sandbox: SandboxServer
) -> None:
    port = sandbox.port
    set_conn(host=f"127.0.0.1:{port}", schema="http", port=port + 1, password=SANDBOX_KEY)
    refused_before_any_request(
        sandbox, f"has its own port {port}", f"Port field is {port + 1}", secret=SANDBOX_KEY
    )
    set_conn(host=f"127.0.0.1:{port}", schema="http", port=port, password=SANDBOX_KEY)
    assert LuccaHook(CONN_ID).client_config.base_url == sandbox.url


def test_the_port_field_is_ignored_when_the_host_has_a_scheme(
    set_conn: SetConn, sandbox: SandboxServer
) -> None:
    # What the README advises against the Airflow 3.3.2 Test button bug: store a port (even one
    # that is not the account's) and keep the account URL with its scheme.
    set_conn(host=sandbox.url, port=443, password=SANDBOX_KEY, extra=UNRETRIED)
    ok, message = LuccaHook(CONN_ID).test_connection()
    assert ok is True, message
    assert LuccaHook(CONN_ID).client_config.base_url == sandbox.url


@pytest.mark.parametrize("port", [0, None])
def test_a_port_field_of_zero_means_no_port(
    monkeypatch: pytest.MonkeyPatch, sandbox: SandboxServer, port: int | None
) -> None:
    """Airflow 3.3.2's UI sends port 0 for a connection without a port (README, Troubleshooting);
    an ``AIRFLOW_CONN_*`` JSON cannot carry a 0, so the connection is built by hand."""
    from airflow.sdk import Connection

    conn = Connection(
        conn_id=CONN_ID,
        conn_type="lucca",
        host=sandbox.url.removeprefix("http://"),
        schema="http",
        port=port,
        password=SANDBOX_KEY,
        extra=json.dumps(UNRETRIED),
    )
    monkeypatch.setattr(LuccaHook, "get_connection", classmethod(lambda cls, conn_id: conn))
    ok, message = LuccaHook(CONN_ID).test_connection()
    assert ok is True, message
    assert LuccaHook(CONN_ID).client_config.base_url == sandbox.url


# -- provider discovery ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def providers_manager() -> Any:
    from airflow.providers_manager import ProvidersManager

    return ProvidersManager()


@pytest.fixture
def quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ProvidersManager.hooks is deprecated in 3.3
        yield


def test_provider_is_discovered(providers_manager: Any) -> None:
    info = providers_manager.providers["airflow-provider-lucca"]
    assert info.version == __version__
    assert get_provider_info()["package-name"] == "airflow-provider-lucca"


@pytest.mark.usefixtures("quiet")
def test_lucca_connection_type_is_registered_with_a_testable_hook(providers_manager: Any) -> None:
    hook = providers_manager.hooks["lucca"]
    assert hook is not None
    assert hook.hook_class_name == "airflow_provider_lucca.hooks.lucca.LuccaHook"
    assert hook.connection_id_attribute_name == "lucca_conn_id"
    assert hook.hook_name == "Lucca"
    assert hook.package_name == "airflow-provider-lucca"
    assert hook.connection_testable is True
    assert LuccaHook.conn_type == "lucca"
    assert LuccaHook.default_conn_name == "lucca_default"


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("requests_per_minute", {"default": 50, "minimum": 0, "maximum": 6000}),
        ("page_size", {"default": 100, "minimum": 1, "maximum": 100}),
        ("timeout", {"default": 30, "minimum": 1, "maximum": 300}),
        ("max_retries", {"default": 5, "minimum": 0, "maximum": 20}),
        ("allow_plain_http", {"default": False}),
    ],
)
def test_connection_form_lists_the_extra_fields(
    providers_manager: Any, name: str, schema: dict[str, Any]
) -> None:
    widget = providers_manager.connection_form_widgets[f"extra__lucca__{name}"]
    assert widget.hook_class_name == "airflow_provider_lucca.hooks.lucca.LuccaHook"
    assert widget.field_name == name
    assert widget.is_sensitive is False
    field = widget.field
    assert field["value"] == schema["default"]
    assert field["schema"]["title"]
    assert field["description"]
    for key, value in schema.items():
        assert field["schema"][key] == value


def test_connection_form_has_no_unexpected_lucca_fields(providers_manager: Any) -> None:
    lucca_fields = {
        key for key in providers_manager.connection_form_widgets if key.startswith("extra__lucca__")
    }
    assert lucca_fields == {f"extra__lucca__{name}" for name in EXTRA_FIELDS}


def test_connection_form_relabels_and_hides_standard_fields(providers_manager: Any) -> None:
    behaviour = providers_manager.field_behaviours["lucca"]
    assert set(behaviour["hidden_fields"]) >= {"schema", "port", "login"}
    assert "host" not in behaviour["hidden_fields"]
    assert "password" not in behaviour["hidden_fields"]
    assert behaviour["relabeling"] == {"host": "Lucca account URL", "password": "API key"}
    assert behaviour["placeholders"]["host"].startswith("https://")


# -- one source for the defaults and bounds: form, hook, client ---------------------------------

#: The numeric extras: default and bounds (both included), as client/defaults.py writes them.
NUMERIC_SETTINGS: dict[str, tuple[float, tuple[float, float]]] = {
    "requests_per_minute": (DEFAULT_REQUESTS_PER_MINUTE, REQUESTS_PER_MINUTE_RANGE),
    "page_size": (DEFAULT_PAGE_SIZE, PAGE_SIZE_RANGE),
    "timeout": (DEFAULT_TIMEOUT, TIMEOUT_RANGE),
    "max_retries": (DEFAULT_MAX_RETRIES, MAX_RETRIES_RANGE),
}


def test_the_form_the_hook_and_the_client_agree_on_the_defaults(set_conn: SetConn) -> None:
    form = get_provider_info()["connection-types"][0]["conn-fields"]
    shown = {name: form[name]["schema"]["default"] for name in NUMERIC_SETTINGS}
    constants = {name: default for name, (default, _) in NUMERIC_SETTINGS.items()}
    set_conn(extra="")
    hook = LuccaHook(CONN_ID).client_config
    plain = ClientConfig(base_url=BASE, api_key=KEY)
    for config in (hook, plain):
        used = {
            "requests_per_minute": config.requests_per_minute,
            "page_size": config.page_size,
            "timeout": config.timeout,
            "max_retries": config.retry.max_attempts - 1,
        }
        assert shown == constants == used
        assert config.retry == RetryPolicy()
    assert RetryPolicy().max_attempts == 1 + DEFAULT_MAX_RETRIES
    assert form["allow_plain_http"]["schema"]["default"] is hook.allow_plain_http is False


@pytest.mark.parametrize("name", NUMERIC_SETTINGS)
def test_the_form_offers_exactly_what_the_hook_accepts(set_conn: SetConn, name: str) -> None:
    """The form's minimum and maximum are the hook's bounds: both accepted, a step beyond each
    refused."""
    schema = get_provider_info()["connection-types"][0]["conn-fields"][name]["schema"]
    _, (low, high) = NUMERIC_SETTINGS[name]
    assert (schema["minimum"], schema["maximum"]) == (low, high)
    for value in (low, high):
        set_conn(extra={name: value})
        LuccaHook(CONN_ID).client_config  # noqa: B018 - accepted
    for value in (low - 1, high + 1):
        set_conn(extra={name: value})
        with pytest.raises(LuccaConfigError, match=f"extra {name}="):
            LuccaHook(CONN_ID).client_config  # noqa: B018


def test_the_entry_point_in_pyproject_names_get_provider_info() -> None:
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    found = re.search(r'^provider_info = "([\w.]+):(\w+)"$', pyproject, flags=re.M)
    assert found, "no provider_info entry point in pyproject.toml"
    module, attribute = found.groups()
    assert getattr(importlib.import_module(module), attribute) is get_provider_info


def test_reading_the_provider_info_imports_neither_airflow_nor_requests() -> None:
    """Airflow calls get_provider_info at every start-up, before any hook is needed."""
    code = (
        "import sys\n"
        "from airflow_provider_lucca.get_provider_info import get_provider_info\n"
        "get_provider_info()\n"
        "print(sorted(m for m in ('airflow', 'requests') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
