"""LuccaHook with Airflow: connection -> client config, the UI Test button, provider discovery.

Connections come from ``AIRFLOW_CONN_<ID>`` environment variables (outside a running task,
``BaseHook.get_connection`` does not read the metadata DB). HTTP is mocked with ``responses``
except for the refused-connection case, which uses a real closed port on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_lucca import __version__, get_provider_info
from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    LuccaConfigError,
    LuccaRetriesExhaustedError,
    RetryPolicy,
)
from airflow_provider_lucca.hooks.lucca import LuccaHook

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
        ("page_size", 0, "1..100"),
        ("page_size", 101, "1..100"),
        ("page_size", "abc", "1..100"),
        ("page_size", True, "1..100"),
        ("page_size", 2.5, "1..100"),
        ("max_retries", -1, "0..20"),
        ("max_retries", 21, "0..20"),
        ("max_retries", "many", "0..20"),
        ("requests_per_minute", -1, ">= 0"),
        ("requests_per_minute", "fast", ">= 0"),
        ("timeout", 0, ">= 1"),
        ("timeout", "30s", ">= 1"),
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
        (requests.exceptions.ReadTimeout("read timed out"), "did not answer within 10 s"),
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
    set_conn(extra={"requests_per_minute": 0, "max_retries": 20, "timeout": 300})
    rsps.get(URL, body=failure)

    ok, message = LuccaHook(CONN_ID).test_connection()

    assert ok is False
    assert fragment in message
    assert BASE in message
    assert KEY not in message
    # the Test button uses its own short budget, not the connection's 20 retries
    assert len(rsps.calls) == 2
    assert rsps.calls[0].request.req_kwargs["timeout"] == (10.0, 10.0)


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
        ("requests_per_minute", {"default": 50, "minimum": 0}),
        ("page_size", {"default": 100, "minimum": 1, "maximum": 100}),
        ("timeout", {"default": 30, "minimum": 1}),
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
