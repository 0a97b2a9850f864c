"""The Lucca client on its own (no Airflow): serialization, config, retries, pacing, paging.

HTTP is mocked with ``responses``; the clock and sleep are injected (a fake clock whose ``sleep``
advances time), so every wait is asserted without sleeping.
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaAPIError,
    LuccaAuthError,
    LuccaClient,
    LuccaConfigError,
    LuccaNotFoundError,
    LuccaRateLimitError,
    LuccaRedirectError,
    LuccaRequestError,
    LuccaResponseError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
    RequestPacer,
    RetryPolicy,
    normalize_base_url,
    parse_retry_after,
)
from airflow_provider_lucca.client.query import (
    INT32_MAX,
    realized_trainings_params,
    validate_date,
)

BASE = "https://acme.ilucca.net"
URL = BASE + REALIZED_TRAININGS_PATH
KEY = "s3cr3t-lucca-api-key-7f3a9c"
CLIENT_LOGGER = "airflow_provider_lucca.client.client"


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or a test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(
    clock: FakeClock | None = None,
    *,
    rpm: float = 0,
    page_size: int = 100,
    retry: RetryPolicy | None = None,
    base_url: str = BASE,
    **config: Any,
) -> LuccaClient:
    clock = clock or FakeClock()
    cfg = ClientConfig(
        base_url=base_url,
        api_key=KEY,
        requests_per_minute=rpm,
        page_size=page_size,
        retry=retry or RetryPolicy(jitter=0.0),
        **config,
    )
    return LuccaClient(cfg, sleep=clock.sleep, clock=clock, rng=random.Random(1234))


def page_body(items: list[Any] | None = None, nxt: Any = None, count: Any = None) -> dict[str, Any]:
    return {"items": items if items is not None else [], "next": nxt, "count": count}


def query_of(call: Any) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(call.request.url).query, keep_blank_values=True)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# -- query serialization and argument validation ---------------------------------------------------


def test_filters_are_serialized_as_the_spec_says(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body(count=0))
    client = make_client()

    list(
        client.iter_realized_trainings(
            owner_ids=[416, 23],
            has_attended=True,
            session_end_on_after=date(2025, 1, 1),
            session_end_on_before="2025-01-31",
            training_ids=(7, 8),
        )
    )

    url = rsps.calls[0].request.url
    assert url.startswith(URL + "?")
    raw = urlsplit(url).query
    # form, explode=true: one key per value, never a comma list
    assert "ownerIds=416&ownerIds=23" in raw
    assert "trainingId=7&trainingId=8" in raw
    assert "hasAttended=true" in raw
    assert "sessionEndOnAfter=2025-01-01" in raw
    assert "sessionEndOnBefore=2025-01-31" in raw
    ids_part = raw.replace("fields.root=next%2Ccount", "")
    assert "%2C" not in ids_part
    assert "," not in ids_part


def test_false_and_single_ids_serialize(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    list(make_client().iter_realized_trainings(has_attended=False, owner_ids=416, training_ids=[9]))
    query = query_of(rsps.calls[0])
    assert ("hasAttended", "false") in query
    assert [v for k, v in query if k == "ownerIds"] == ["416"]
    assert [v for k, v in query if k == "trainingId"] == ["9"]


def test_no_filter_sends_only_paging_parameters(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    list(make_client(page_size=40).iter_realized_trainings())
    assert sorted(query_of(rsps.calls[0])) == [("fields.root", "next,count"), ("limit", "40")]


@given(st.lists(st.integers(min_value=1, max_value=INT32_MAX), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_any_valid_id_list_serializes_in_order_without_duplicates(ids: list[int]) -> None:
    params = realized_trainings_params(owner_ids=ids, training_ids=ids)
    expected = [str(i) for i in dict.fromkeys(ids)]
    assert [v for k, v in params if k == "ownerIds"] == expected
    assert [v for k, v in params if k == "trainingId"] == expected


@given(st.dates())
@settings(max_examples=60, deadline=None)
def test_any_calendar_date_round_trips_through_its_iso_string(day: date) -> None:
    assert validate_date("session_end_on_after", day.isoformat()) == day
    params = realized_trainings_params(session_end_on_before=day)
    assert params == [("sessionEndOnBefore", day.isoformat())]


@pytest.mark.parametrize(
    ("kwargs", "name", "expected"),
    [
        ({"owner_ids": 0}, "owner_ids", "positive integer"),
        ({"owner_ids": -1}, "owner_ids", "positive integer"),
        ({"owner_ids": True}, "owner_ids", "positive integer"),
        ({"owner_ids": "416"}, "owner_ids", "list of positive integer ids"),
        ({"owner_ids": "alice"}, "owner_ids", "list of positive integer ids"),
        ({"owner_ids": [416, "23"]}, "owner_ids", "positive integer"),
        ({"owner_ids": [416, False]}, "owner_ids", "positive integer"),
        ({"owner_ids": 416.0}, "owner_ids", "list of positive integer ids"),
        ({"owner_ids": []}, "owner_ids", "non-empty"),
        ({"training_ids": 0}, "training_ids", "positive integer"),
        ({"training_ids": -1}, "training_ids", "positive integer"),
        ({"training_ids": [True]}, "training_ids", "positive integer"),
        ({"training_ids": "12"}, "training_ids", "list of positive integer ids"),
        ({"training_ids": [INT32_MAX + 1]}, "training_ids", f"1..{INT32_MAX}"),
        ({"session_end_on_after": "2025-02-30"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_after": "2025/01/01"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_after": "20250101"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_after": "2025-W01-1"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_before": " 2025-01-1"}, "session_end_on_before", "YYYY-MM-DD"),
        (
            {"session_end_on_before": datetime(2025, 1, 1, tzinfo=timezone.utc)},
            "session_end_on_before",
            "not a datetime",
        ),
        ({"session_end_on_before": datetime(2025, 1, 1)}, "session_end_on_before", "datetime"),
        ({"session_end_on_before": 20250101}, "session_end_on_before", "YYYY-MM-DD"),
        ({"has_attended": "yes"}, "has_attended", "True, False or None"),
        ({"has_attended": "true"}, "has_attended", "True, False or None"),
        ({"has_attended": 1}, "has_attended", "True, False or None"),
    ],
)
def test_bad_filter_raises_before_any_request(
    rsps: responses.RequestsMock, kwargs: dict[str, Any], name: str, expected: str
) -> None:
    rsps.get(URL, json=page_body())
    client = make_client()
    # iter_realized_trainings validates eagerly: the call itself raises, before iteration.
    with pytest.raises(LuccaConfigError) as info:
        client.iter_realized_trainings(**kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert f"Invalid {name}=" in message
    assert expected in message
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("page_size", [0, 101, -1, True, "50", 50.0])
def test_bad_page_size_is_refused_by_config(page_size: Any) -> None:
    with pytest.raises(LuccaConfigError, match=r"Invalid page_size=.*an integer from 1 to 100"):
        ClientConfig(base_url=BASE, api_key=KEY, page_size=page_size)


@pytest.mark.parametrize("page_size", [1, 100])
def test_page_size_bounds_are_accepted_and_sent_as_limit(
    rsps: responses.RequestsMock, page_size: int
) -> None:
    rsps.get(URL, json=page_body())
    list(make_client(page_size=page_size).iter_realized_trainings())
    assert ("limit", str(page_size)) in query_of(rsps.calls[0])


# -- account URL and config ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("acme.ilucca.net", "https://acme.ilucca.net"),
        ("https://acme.ilucca.net", "https://acme.ilucca.net"),
        ("https://acme.ilucca.net/", "https://acme.ilucca.net"),
        ("  acme.ilucca.net/  ", "https://acme.ilucca.net"),
        ("HTTPS://ACME.ilucca.net", "https://acme.ilucca.net"),
        ("acme.ilucca-test.ch", "https://acme.ilucca-test.ch"),
        ("acme-x.sandbox.eu1.luccasoftware.com", "https://acme-x.sandbox.eu1.luccasoftware.com"),
        ("https://acme.ilucca.net:8443", "https://acme.ilucca.net:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://localhost", "http://localhost"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_account_url_is_normalized(host: str, expected: str) -> None:
    assert normalize_base_url(host) == expected
    assert ClientConfig(base_url=host, api_key=KEY).base_url == expected


@pytest.mark.parametrize(
    ("host", "fragment"),
    [
        ("http://acme.ilucca.net", "Refusing plain http for acme.ilucca.net"),
        ("http://10.0.0.5:8080", "Refusing plain http"),
        ("https://acme.ilucca.net/talent-training", "no path or query"),
        ("https://acme.ilucca.net/?x=1", "no path or query"),
        ("https://acme.ilucca.net#top", "no path or query"),
        ("https://bob@acme.ilucca.net", "contains credentials"),
        ("https://bob:pw@acme.ilucca.net", "contains credentials"),
        ("acme ilucca.net", "Invalid host"),
        ("https://acme_ilucca.net", "Invalid host"),
        ("ftp://acme.ilucca.net", "expected the account URL alone"),
        ("https://", "expected the account URL alone"),
        ("acme.ilucca.net:https", "Invalid port"),
        ("", "is empty"),
        ("   ", "is empty"),
        (None, "is empty"),
    ],
)
def test_bad_account_url_is_refused_with_a_reason(host: str | None, fragment: str) -> None:
    with pytest.raises(LuccaConfigError) as info:
        normalize_base_url(host)
    assert fragment in str(info.value)


def test_a_key_with_a_trailing_newline_is_stripped(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    config = ClientConfig(base_url=BASE, api_key=f"  {KEY}\n", requests_per_minute=0)
    list(LuccaClient(config).iter_realized_trainings())
    assert rsps.calls[0].request.headers["Authorization"] == f"lucca application={KEY}"


def test_a_key_with_control_characters_is_refused_without_echoing_it() -> None:
    with pytest.raises(LuccaConfigError, match="control character") as info:
        ClientConfig(base_url=BASE, api_key=f"{KEY}\r\nX-Injected: 1")
    assert KEY not in str(info.value)


def test_credentials_in_the_url_are_not_echoed() -> None:
    with pytest.raises(LuccaConfigError) as info:
        normalize_base_url("https://bob:s3cr3t-pw@acme.ilucca.net")
    assert "s3cr3t-pw" not in str(info.value)


def test_plain_http_message_says_why_and_what_to_do() -> None:
    with pytest.raises(LuccaConfigError) as info:
        ClientConfig(base_url="http://acme.ilucca.net", api_key=KEY)
    message = str(info.value)
    assert "unencrypted" in message
    assert "Use https://" in message


def test_plain_http_can_be_allowed_explicitly_for_a_private_sandbox() -> None:
    config = ClientConfig(base_url="http://lucca-sandbox:8080", api_key=KEY, allow_plain_http=True)
    assert config.base_url == "http://lucca-sandbox:8080"


@pytest.mark.parametrize("key", ["", "   "])
def test_empty_api_key_is_refused(key: str) -> None:
    with pytest.raises(LuccaConfigError, match="API key is empty"):
        ClientConfig(base_url=BASE, api_key=key)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("requests_per_minute", -1, "requests_per_minute"),
        ("timeout", 0, "timeout"),
        ("timeout", -5.0, "timeout"),
    ],
)
def test_bad_numeric_settings_are_refused(field: str, value: float, fragment: str) -> None:
    with pytest.raises(LuccaConfigError, match=fragment):
        ClientConfig(base_url=BASE, api_key=KEY, **{field: value})


def test_config_repr_does_not_show_the_key() -> None:
    config = ClientConfig(base_url=BASE, api_key=KEY)
    assert KEY not in repr(config)
    assert "acme.ilucca.net" in repr(config)


# -- bounds: numeric settings, the key's characters, host labels, ports ---------------------------


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("timeout", 10**12, "a finite number of seconds above 0 and at most 300"),
        ("timeout", 1e20, "a finite number of seconds above 0 and at most 300"),
        ("timeout", 300.5, "a finite number of seconds above 0 and at most 300"),
        ("timeout", float("nan"), "a finite number of seconds above 0 and at most 300"),
        ("timeout", float("inf"), "a finite number of seconds above 0 and at most 300"),
        ("timeout", "30", "a finite number of seconds above 0 and at most 300"),
        ("timeout", True, "a finite number of seconds above 0 and at most 300"),
        ("requests_per_minute", 1e300, "a number from 0 (no pacing) to 6000"),
        ("requests_per_minute", 6001, "a number from 0 (no pacing) to 6000"),
        ("requests_per_minute", float("nan"), "a number from 0 (no pacing) to 6000"),
        ("requests_per_minute", float("inf"), "a number from 0 (no pacing) to 6000"),
        ("requests_per_minute", "50", "a number from 0 (no pacing) to 6000"),
        ("requests_per_minute", None, "a number from 0 (no pacing) to 6000"),
        ("max_response_bytes", 0, "an integer number of bytes from 1 to 104857600"),
        ("max_response_bytes", 10**12, "an integer number of bytes from 1 to 104857600"),
        ("max_response_bytes", 1024.0, "an integer number of bytes from 1 to 104857600"),
        ("max_response_bytes", float("inf"), "an integer number of bytes from 1 to 104857600"),
        ("page_size", float("nan"), "an integer from 1 to 100"),
    ],
)
def test_absurd_or_non_finite_settings_are_refused_naming_the_field_and_the_bounds(
    field: str, value: object, expected: str
) -> None:
    with pytest.raises(LuccaConfigError) as info:
        ClientConfig(base_url=BASE, api_key=KEY, **{field: value})
    message = str(info.value)
    assert f"Invalid {field}=" in message
    assert expected in message
    assert KEY not in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout", 0.5),  # a local sandbox in tests
        ("timeout", 300),
        ("timeout", 300.0),
        ("requests_per_minute", 0),
        ("requests_per_minute", 0.5),
        ("requests_per_minute", 6000),
        ("max_response_bytes", 1),
        ("max_response_bytes", 100 * 1024 * 1024),
    ],
)
def test_settings_at_their_bounds_are_accepted(field: str, value: float) -> None:
    config = ClientConfig(base_url=BASE, api_key=KEY, **{field: value})
    assert getattr(config, field) == value


def test_the_timeout_bound_is_below_what_the_socket_layer_can_hold(
    rsps: responses.RequestsMock,
) -> None:
    # The largest accepted timeout reaches requests as is (10**12 used to raise OverflowError).
    rsps.get(URL, json=page_body())
    list(make_client(timeout=300.0).iter_realized_trainings())
    assert rsps.calls[0].request.req_kwargs["timeout"] == (10.0, 300.0)


ZWSP_KEY = KEY + "\u200b"


@pytest.mark.parametrize(
    ("key", "fragments"),
    [
        (
            ZWSP_KEY,
            [
                "a non-ASCII character (U+200B ZERO WIDTH SPACE)",
                f"at position {len(ZWSP_KEY)} of {len(ZWSP_KEY)}",
            ],
        ),
        (
            KEY[:6] + "\u2019" + KEY[6:],
            ["a non-ASCII character (U+2019 RIGHT SINGLE QUOTATION MARK)", "at position 7 of"],
        ),
        ("\ufeff" + KEY, ["a non-ASCII character (U+FEFF", "at position 1 of"]),
        (KEY[:3] + "\u00e9" + KEY[3:], ["(U+00E9 LATIN SMALL LETTER E WITH ACUTE)"]),
        (KEY[:3] + "\u00a0" + KEY[3:], ["(U+00A0 NO-BREAK SPACE) at position 4 of"]),
        (KEY[:10] + " " + KEY[10:], ["a space (U+0020) at position 11 of"]),
        (f"  {KEY[:10]} {KEY[10:]}\n", ["a space (U+0020) at position 13 of"]),
        (KEY[:4] + "\t" + KEY[4:], ["a control character (U+0009) at position 5 of"]),
        (f"{KEY}\r\nX-Injected: 1", ["a control character (U+000D)"]),
        (KEY[:4] + "\x7f" + KEY[4:], ["a control character (U+007F)"]),
    ],
    ids=[
        "zero-width-space",
        "typographic-apostrophe",
        "byte-order-mark",
        "accented-letter",
        "no-break-space",
        "space-inside",
        "space-inside-stripped-key",
        "tab",
        "crlf",
        "delete",
    ],
)
def test_a_key_that_is_not_printable_ascii_is_refused_without_echoing_it(
    key: str, fragments: list[str]
) -> None:
    """requests encodes headers as latin-1: such a key used to fail at the first request with a
    UnicodeEncodeError (or be sent as is, and answered 401)."""
    with pytest.raises(LuccaConfigError) as info:
        ClientConfig(base_url=BASE, api_key=key)
    message = str(info.value)
    assert message.startswith("The Lucca API key contains ")
    for fragment in fragments:
        assert fragment in message
    assert "paste the key again" in message
    for part in (KEY, KEY[:6], KEY[-6:], key.strip()):
        assert part not in message


def test_a_printable_ascii_key_with_punctuation_is_kept() -> None:
    key = "Ab0!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~z"
    assert ClientConfig(base_url=BASE, api_key=key).api_key == key


LABEL_RULES = "labels of 1 to 63 letters, digits or hyphens"


@pytest.mark.parametrize(
    ("host", "fragments"),
    [
        ("https://acme..ilucca.net", ["label 2 is empty", LABEL_RULES]),
        ("acme..ilucca.net", ["label 2 is empty", LABEL_RULES]),
        ("https://.acme.ilucca.net", ["label 1 is empty"]),
        ("https://acme.ilucca.net.", ["label 4 is empty"]),
        ("https://-acme.ilucca.net", ["label 1 starts or ends with a hyphen", LABEL_RULES]),
        ("https://acme-.ilucca.net", ["label 1 starts or ends with a hyphen"]),
        ("https://" + "a" * 64 + ".ilucca.net", ["label 1 is 64 characters long", LABEL_RULES]),
        ("https://" + ".".join(["a" * 63] * 4) + ".net", ["259 characters long", "at most 253"]),
        ("https://acme_x.ilucca.net", ["label 1 has a character other than", LABEL_RULES]),
        ("https://acmé.ilucca.net", ["label 1 has a character other than"]),
        ("https://999.1.1.1", ["not a valid IPv4 address"]),
        ("https://10.0.0", ["not a valid IPv4 address"]),
        ("https://[acme.ilucca.net]", ["IPv6"]),
        ("https://[::1", ["IPv6"]),
        ("https://acme.ilucca.net:0", ["port 0", "expected a port from 1 to 65535"]),
        ("https://acme.ilucca.net:65536", ["expected a port from 1 to 65535"]),
        ("https://acme.ilucca.net:99999", ["expected a port from 1 to 65535"]),
        ("https://acme.ilucca.net:+443", ["expected a port from 1 to 65535"]),
        ("https://acme.ilucca.net:-1", ["expected a port from 1 to 65535"]),
    ],
)
def test_bad_host_labels_and_ports_are_refused_naming_the_rule(
    host: str, fragments: list[str]
) -> None:
    """Such hosts used to pass and fail at the first request (LocationParseError), or lose their
    port (0) silently, or raise an untyped ValueError (unbalanced brackets)."""
    with pytest.raises(LuccaConfigError) as info:
        normalize_base_url(host)
    message = str(info.value)
    assert "Lucca account URL" in message
    assert "e.g. https://acme.ilucca.net" in message
    for fragment in fragments:
        assert fragment in message
    with pytest.raises(LuccaConfigError):
        ClientConfig(base_url=host, api_key=KEY)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("https://" + "a" * 63 + ".ilucca.net", "https://" + "a" * 63 + ".ilucca.net"),
        (
            "https://" + ".".join(["a" * 63] * 3 + ["b" * 61]),
            "https://" + ".".join(["a" * 63] * 3 + ["b" * 61]),
        ),
        ("https://123.ilucca.net", "https://123.ilucca.net"),
        ("https://xn--acm-bma.ilucca.net", "https://xn--acm-bma.ilucca.net"),
        ("https://a-b--c.ilucca.net", "https://a-b--c.ilucca.net"),
        ("https://10.0.0.1", "https://10.0.0.1"),
        ("https://[2001:db8::1]:8443", "https://[2001:db8::1]:8443"),
        ("https://acme.ilucca.net:1", "https://acme.ilucca.net:1"),
        ("https://acme.ilucca.net:65535", "https://acme.ilucca.net:65535"),
        ("https://acme.ilucca.net:", "https://acme.ilucca.net"),
    ],
)
def test_valid_hosts_at_the_limits_are_accepted(host: str, expected: str) -> None:
    assert normalize_base_url(host) == expected


# -- headers, transport settings -------------------------------------------------------------------


def test_requests_carry_lucca_auth_and_a_user_agent(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    list(make_client().iter_realized_trainings())
    headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"lucca application={KEY}"
    assert f"airflow-provider-lucca/{__version__}" in headers["User-Agent"]
    assert headers["Accept"] == "application/json"


def test_netrc_cannot_replace_the_key_and_https_proxies_are_honoured(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine acme.ilucca.net login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    rsps.get(URL, json=page_body())
    list(make_client().iter_realized_trainings())
    call = rsps.calls[0]
    assert call.request.headers["Authorization"] == f"lucca application={KEY}"
    # A corporate egress proxy is used (CONNECT tunnel: the key stays inside TLS).
    assert call.request.req_kwargs["proxies"]["https"] == "http://proxy.example:3128"


def test_no_proxy_and_the_plain_http_sandbox_bypass_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "acme.ilucca.net")
    assert make_client().session.proxies == {}
    assert make_client(base_url="http://127.0.0.1:8089").session.proxies == {}


@pytest.mark.parametrize(("timeout", "expected"), [(30.0, (10.0, 30.0)), (4.0, (4.0, 4.0))])
def test_every_request_has_connect_and_read_timeouts(
    rsps: responses.RequestsMock, timeout: float, expected: tuple[float, float]
) -> None:
    rsps.get(URL, json=page_body())
    list(make_client(timeout=timeout).iter_realized_trainings())
    assert rsps.calls[0].request.req_kwargs["timeout"] == expected


def test_get_json_refuses_a_full_url_as_path(rsps: responses.RequestsMock) -> None:
    with pytest.raises(ValueError, match="path must be a path"):
        make_client().get_json("https://evil.example/x", [])
    with pytest.raises(ValueError, match="path must be a path"):
        make_client().get_json("talent-training/api/v2/realized-trainings", [])
    assert len(rsps.calls) == 0


# -- retries ---------------------------------------------------------------------------------------

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


# -- redirects -------------------------------------------------------------------------------------


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


# -- pacing ----------------------------------------------------------------------------------------


def test_pacer_spaces_requests_evenly() -> None:
    clock = FakeClock()
    pacer = RequestPacer(60, clock=clock, sleep=clock.sleep)

    waits = [pacer.wait() for _ in range(4)]

    assert waits == pytest.approx([0.0, 1.01, 1.01, 1.01])
    assert clock.sleeps == pytest.approx([1.01, 1.01, 1.01])
    assert clock.now - 1000.0 == pytest.approx(3.03)


def test_pacer_counts_time_spent_between_calls() -> None:
    clock = FakeClock()
    pacer = RequestPacer(60, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 0.5  # the request itself took half a second
    assert pacer.wait() == pytest.approx(0.51)
    clock.now += 5.0  # idle for a while
    assert pacer.wait() == 0.0
    # no burst credit saved up while idle: the next call is spaced again
    assert pacer.wait() == pytest.approx(1.01)


def test_lucca_default_budget_gives_one_request_per_1_2_seconds() -> None:
    clock = FakeClock()
    pacer = RequestPacer(50, clock=clock, sleep=clock.sleep)
    for _ in range(51):
        pacer.wait()
    # 51 requests never fit in one 60 s window
    assert clock.now - 1000.0 > 60.0


@pytest.mark.parametrize("rpm", [0, -1])
def test_pacing_zero_disables_it(rpm: float) -> None:
    clock = FakeClock()
    pacer = RequestPacer(rpm, clock=clock, sleep=clock.sleep)
    assert [pacer.wait() for _ in range(100)] == [0.0] * 100
    assert clock.sleeps == []


def test_pacer_hands_out_distinct_slots_to_concurrent_threads() -> None:
    """Threads sharing a pacer share one budget: no two get the same slot, even under races."""

    class RacyTime(float):
        """A frozen time whose comparisons yield the CPU: the pacer compares it with the slot
        it has just read, so without a lock another thread would read the same slot."""

        def __lt__(self, other: object) -> bool:
            time.sleep(0.0002)
            return float(self) < float(other)  # type: ignore[arg-type]

        def __gt__(self, other: object) -> bool:
            time.sleep(0.0002)
            return float(self) > float(other)  # type: ignore[arg-type]

    start = RacyTime(50.0)
    pacer = RequestPacer(60, clock=lambda: start, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            waited = pacer.wait()
            with lock:
                waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(waits) == pytest.approx([k * 1.01 for k in range(40)])


def test_pacer_shared_by_threads_in_real_time() -> None:
    pacer = RequestPacer(1200)  # 0.0505 s per request
    calls = 12
    began = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [pacer.wait() for _ in range(calls // 4)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    assert (calls - 1) * pacer.interval <= elapsed < 2 * calls * pacer.interval + 0.5


def test_client_paces_successive_pages(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json=page_body([{"id": 2}], nxt="c2"))
    rsps.get(URL, json=page_body([{"id": 3}]))
    clock = FakeClock()
    client = make_client(clock, rpm=60)

    list(client.iter_realized_trainings())

    assert clock.sleeps == pytest.approx([1.01, 1.01])
    assert client.stats.pacing_wait_seconds == pytest.approx(2.02)


# -- pagination ------------------------------------------------------------------------------------


def test_pagination_follows_opaque_cursors_on_the_same_host(rsps: responses.RequestsMock) -> None:
    cursors = ["!SGlnaA|A1kVrwDKrz|th", "https://evil.example/x?a=1&b=2"]
    rsps.get(URL, json=page_body([{"id": 1}, {"id": 2}], nxt=cursors[0], count=5))
    rsps.get(URL, json=page_body([{"id": 3}, {"id": 4}], nxt=cursors[1], count=5))
    rsps.get(URL, json=page_body([{"id": 5}], nxt=None, count=5))
    evil = rsps.get("https://evil.example/x", json=page_body())
    client = make_client(page_size=2)

    pages = list(client.iter_realized_trainings(owner_ids=[416, 23]))

    assert [p.number for p in pages] == [1, 2, 3]
    assert [item["id"] for p in pages for item in p.items] == [1, 2, 3, 4, 5]
    assert [p.count for p in pages] == [5, 5, 5]
    assert [p.next_cursor for p in pages] == [*cursors, None]
    assert len(rsps.calls) == 3
    assert evil.call_count == 0
    sent_pages: list[str | None] = []
    for call in rsps.calls:
        parts = urlsplit(call.request.url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == URL
        query = query_of(call)
        assert query.count(("fields.root", "next,count")) == 1
        assert query.count(("limit", "2")) == 1
        # filters are repeated on every page
        assert [v for k, v in query if k == "ownerIds"] == ["416", "23"]
        page_values = [v for k, v in query if k == "page"]
        assert len(page_values) <= 1
        sent_pages.append(page_values[0] if page_values else None)
    assert sent_pages == [None, *cursors]


def test_pages_are_streamed_one_request_at_a_time(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json=page_body([{"id": 2}]))
    pages = make_client().iter_realized_trainings()
    assert len(rsps.calls) == 0
    first = next(pages)
    assert first.items == [{"id": 1}]
    assert len(rsps.calls) == 1
    assert [p.items for p in pages] == [[{"id": 2}]]
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("body", [{"items": [{"id": 1}], "next": None}, {"items": [{"id": 1}]}])
def test_pagination_stops_on_null_or_absent_next(
    rsps: responses.RequestsMock, body: dict[str, Any]
) -> None:
    rsps.get(URL, json=body)
    rsps.get(URL, json=page_body([{"id": 99}]))
    pages = list(make_client().iter_realized_trainings())
    assert len(pages) == 1
    assert pages[0].count is None
    assert len(rsps.calls) == 1


def test_empty_listing_is_one_request_and_one_empty_page(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([], count=0))
    pages = list(make_client().iter_realized_trainings())
    assert [(p.items, p.count) for p in pages] == [([], 0)]
    assert len(rsps.calls) == 1


def test_caller_paging_parameters_are_replaced(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    params = [("limit", "5"), ("page", "3"), ("fields.root", "items"), ("ownerIds", "1")]
    list(make_client(page_size=7).paginate(REALIZED_TRAININGS_PATH, params))
    assert sorted(query_of(rsps.calls[0])) == [
        ("fields.root", "next,count"),
        ("limit", "7"),
        ("ownerIds", "1"),
    ]


def test_empty_pages_that_keep_pointing_further_stop_the_paging(
    rsps: responses.RequestsMock,
) -> None:
    for number in range(10):
        rsps.get(URL, json=page_body([], nxt=f"cursor-{number}", count=0))

    with pytest.raises(LuccaResponseError, match="3 empty pages in a row"):
        list(make_client().iter_realized_trainings())

    assert len(rsps.calls) == 3


def test_a_page_beyond_the_count_stops_the_paging(rsps: responses.RequestsMock) -> None:
    for number in range(10):
        rsps.get(URL, json=page_body([{"id": number}], nxt=f"cursor-{number}", count=2))

    with pytest.raises(LuccaResponseError, match="4 items received by page 4, more than a page"):
        list(make_client(page_size=1).iter_realized_trainings())

    assert len(rsps.calls) == 4


def test_repeated_cursor_fails_instead_of_looping(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="A"))
    rsps.get(URL, json=page_body([{"id": 2}], nxt="B"))
    rsps.get(URL, json=page_body([{"id": 3}], nxt="A"))
    rsps.get(URL, json=page_body([{"id": 4}]))

    received: list[int] = []

    def consume() -> None:
        for page in make_client().iter_realized_trainings():
            received.extend(item["id"] for item in page.items)

    with pytest.raises(LuccaResponseError, match="cursor already followed"):
        consume()

    assert len(rsps.calls) == 3
    # The page carrying the repeated cursor is never handed to the caller.
    assert received == [1, 2]


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


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("too many items", {"json": page_body([{"id": i} for i in range(3)])}, "3 items for limit=2"),
    ("items missing", {"json": {"next": None}}, "'items' is missing"),
    ("items null", {"json": {"items": None}}, "'items' is missing"),
    ("items an object", {"json": {"items": {"id": 1}}}, "'items' is dict"),
    ("items a string", {"json": {"items": "[]"}}, "'items' is str"),
    ("item a number", {"json": page_body([{"id": 1}, 2])}, "item 1 is int"),
    ("item null", {"json": page_body([None])}, "item 0 is NoneType"),
    ("item a list", {"json": page_body([[1]])}, "item 0 is list"),
    ("next a number", {"json": page_body(nxt=5)}, "'next' is 5"),
    ("next empty", {"json": page_body(nxt="")}, "'next' is ''"),
    ("next an object", {"json": page_body(nxt={"page": 2})}, "'next' is"),
    ("count negative", {"json": page_body(count=-1)}, "'count' is -1"),
    ("count bool", {"json": page_body(count=True)}, "'count' is True"),
    ("count string", {"json": page_body(count="3")}, "'count' is '3'"),
    ("count float", {"json": page_body(count=2.5)}, "'count' is 2.5"),
    ("not JSON", {"body": "this is not json"}, "not JSON"),
    ("empty body", {"body": ""}, "not JSON"),
    (
        "HTML",
        {"body": "<!doctype html><html>Login</html>", "content_type": "text/html"},
        "'text/html'",
    ),
    ("JSON NaN", {"body": '{"items": [], "count": NaN}'}, "not JSON"),
    ("JSON array", {"json": [{"id": 1}]}, "expected a JSON object, got list"),
    ("JSON string", {"json": "items"}, "expected a JSON object, got str"),
    ("JSON null", {"body": "null"}, "expected a JSON object, got NoneType"),
]


@pytest.mark.parametrize(("case", "answer", "fragment"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_contract_breaking_answer_fails_without_retry(
    rsps: responses.RequestsMock, case: str, answer: dict[str, Any], fragment: str
) -> None:
    rsps.get(URL, **answer)
    rsps.get(URL, json=page_body([{"id": 1}]))  # would be served if the client wrongly retried
    clock = FakeClock()

    with pytest.raises(LuccaResponseError) as info:
        list(make_client(clock, page_size=2).iter_realized_trainings())

    assert fragment in str(info.value)
    assert REALIZED_TRAININGS_PATH in str(info.value)
    assert len(rsps.calls) == 1
    assert clock.sleeps == []


def test_bad_second_page_fails_after_the_first(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json={"items": "broken"})
    pages = make_client().iter_realized_trainings()
    assert next(pages).items == [{"id": 1}]
    with pytest.raises(LuccaResponseError, match="page 2"):
        next(pages)


def test_unexpected_shapes_inside_a_record_are_passed_through(rsps: responses.RequestsMock) -> None:
    record = {
        "id": 1,
        "training": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "durationInHours": 1.25,
        "sessionId": None,
    }
    rsps.get(URL, json=page_body([record, {"id": 2}]))
    pages = list(make_client().iter_realized_trainings())
    assert pages[0].items == [record, {"id": 2}]


@pytest.mark.parametrize("declare_length", [True, False])
def test_body_larger_than_the_limit_is_refused(
    rsps: responses.RequestsMock, declare_length: bool
) -> None:
    big = '{"items": [], "pad": "' + "x" * 5000 + '"}'
    rsps.get(URL, body=big, auto_calculate_content_length=declare_length)
    rsps.get(URL, json=page_body())

    with pytest.raises(LuccaResponseError, match="1024") as info:
        list(make_client(max_response_bytes=1024).iter_realized_trainings())

    assert "refusing to read it" in str(info.value)
    if declare_length:  # refused from the headers, before reading any of the body
        assert "announces 5" in str(info.value)
    assert len(rsps.calls) == 1


def test_body_at_the_limit_is_accepted(rsps: responses.RequestsMock) -> None:
    body = '{"items": [], "next": null}'
    rsps.get(URL, body=body, auto_calculate_content_length=True)
    pages = list(make_client(max_response_bytes=len(body)).iter_realized_trainings())
    assert pages[0].items == []


# -- check() and stats -----------------------------------------------------------------------------


def test_check_is_one_cheap_request_returning_the_count(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json={"items": [{"id": 1}], "count": 1234})
    assert make_client().check() == 1234
    assert len(rsps.calls) == 1
    assert sorted(query_of(rsps.calls[0])) == [("fields.root", "count"), ("limit", "1")]


def test_stats_count_requests_retries_statuses_and_waits(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "2"})
    rsps.get(URL, status=503)
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json=page_body([{"id": 2}]))
    clock = FakeClock()
    client = make_client(clock, rpm=60)

    list(client.iter_realized_trainings())

    stats = client.stats
    assert stats.requests == 4
    assert stats.retries == 2
    assert stats.statuses == {429: 1, 503: 1, 200: 2}
    # waits: Retry-After 2 s, then backoff(2) = 2 s; the page-2 request is paced by 1.01 s
    assert stats.retry_wait_seconds == pytest.approx(4.0)
    assert stats.pacing_wait_seconds == pytest.approx(1.01)
    assert sum(clock.sleeps) == pytest.approx(stats.retry_wait_seconds + stats.pacing_wait_seconds)


def test_client_is_a_context_manager_closing_its_session() -> None:
    client = make_client()
    closed: list[bool] = []
    client.session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with client as entered:
        assert entered is client
    assert closed == [True]
