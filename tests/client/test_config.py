"""ClientConfig: the account URL, the API key and the numeric settings, checked before any
request."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from airflow_provider_lucca.client import (
    ClientConfig,
    LuccaClient,
    LuccaConfigError,
    RetryPolicy,
    normalize_base_url,
)
from airflow_provider_lucca.client.defaults import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TIMEOUT,
)
from tests.client.conftest import BASE, KEY, URL, make_client, page_body


@pytest.mark.parametrize("page_size", [0, 101, -1, True, "50", 50.0])
def test_bad_page_size_is_refused_by_config(page_size: Any) -> None:
    with pytest.raises(LuccaConfigError, match=r"Invalid page_size=.*an integer from 1 to 100"):
        ClientConfig(base_url=BASE, api_key=KEY, page_size=page_size)


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


def test_the_config_defaults_are_the_client_defaults() -> None:
    config = ClientConfig(base_url=BASE, api_key=KEY)
    assert config.requests_per_minute == DEFAULT_REQUESTS_PER_MINUTE == 50
    assert config.page_size == DEFAULT_PAGE_SIZE == 100
    assert config.timeout == DEFAULT_TIMEOUT == 30
    assert config.max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
    assert config.retry == RetryPolicy()
    assert config.retry.max_attempts == 1 + DEFAULT_MAX_RETRIES == 6
