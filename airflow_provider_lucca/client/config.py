"""Client configuration: the account URL rules and the settings a connection maps to."""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow_provider_lucca.client.defaults import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_PAGE_SIZE,
    DEFAULT_REQUESTS_PER_MINUTE,
    DEFAULT_TIMEOUT,
    MAX_RESPONSE_BYTES_RANGE,
    PAGE_SIZE_RANGE,
    REQUESTS_PER_MINUTE_RANGE,
    TIMEOUT_RANGE,
)
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.client.retry import RetryPolicy

_HOST_FORM = (
    "expected a host name of dot-separated labels of 1 to 63 letters, digits or hyphens, none "
    "starting or ending with a hyphen, 253 characters at most (or an IPv4 address, or an IPv6 "
    "address in brackets), e.g. https://acme.ilucca.net"
)
_LABEL = re.compile(r"[A-Za-z0-9-]+")
_USERINFO = re.compile(r"//[^/?#]*@")


def is_loopback_host(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def host_problem(hostname: str, *, bracketed: bool = False) -> str | None:
    """Why ``hostname`` is not a usable host (RFC 1123 names, IPv4, IPv6), or None if it is."""
    if bracketed:
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError:
            return "the part in brackets is not an IPv6 address"
        return None
    if len(hostname) > 253:
        return f"it is {len(hostname)} characters long, at most 253 allowed"
    labels = hostname.split(".")
    for number, label in enumerate(labels, start=1):
        if not label:
            return f"label {number} is empty (two dots in a row, or a dot at an end)"
        if len(label) > 63:
            return f"label {number} is {len(label)} characters long, at most 63 allowed"
        if not (label.isascii() and _LABEL.fullmatch(label)):
            return f"label {number} has a character other than a letter, digit or hyphen"
        if label.startswith("-") or label.endswith("-"):
            return f"label {number} starts or ends with a hyphen"
    if labels[-1].isdigit():  # no top-level domain is numeric: this is meant as an IPv4 address
        try:
            ipaddress.IPv4Address(hostname)
        except ValueError:
            return "it is not a valid IPv4 address (four numbers from 0 to 255)"
    return None


def normalize_base_url(host: str | None, *, allow_plain_http: bool = False) -> str:
    """``scheme://host[:port]`` from what people paste in the account URL field.

    ``acme.ilucca.net``, ``https://acme.ilucca.net/`` and sandbox hosts are accepted. Plain http is
    refused except on loopback (the local sandbox) or with ``allow_plain_http`` (a sandbox on a
    private container network): the API key must never cross a network in clear text. The host is
    checked label by label and the port against 1..65535, so a typo fails here, typed, rather
    than at the first request.
    """
    text = (host or "").strip()
    if not text:
        raise LuccaConfigError(
            "The Lucca account URL is empty: expected e.g. https://acme.ilucca.net"
        )
    if "://" not in text:
        text = "https://" + text
    # Never echo credentials pasted into the URL.
    shown = repr(_USERINFO.sub("//***@", host or ""))
    expected = "expected the account URL alone, e.g. https://acme.ilucca.net"
    try:
        parts = urlsplit(text)
        hostname = parts.hostname
    except ValueError:  # urlsplit checks the brackets of IPv6 literals
        raise LuccaConfigError(
            f"Invalid host in Lucca account URL {shown}: a bracket is missing or the part in "
            f"brackets is not an IPv6 address; {_HOST_FORM}."
        ) from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise LuccaConfigError(f"Invalid Lucca account URL {shown}: {expected}.")
    if parts.username or parts.password:
        raise LuccaConfigError(
            "Invalid Lucca account URL: it contains credentials; put the API key in the "
            "connection's API key (password) field, not in the URL."
        )
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise LuccaConfigError(f"Invalid Lucca account URL {shown}: {expected} (no path or query).")
    host_and_port = parts.netloc.rpartition("@")[2]
    bracketed = host_and_port.startswith("[")
    problem = host_problem(hostname, bracketed=bracketed)
    if problem:
        raise LuccaConfigError(
            f"Invalid host in Lucca account URL {shown}: {problem}; {_HOST_FORM}."
        )
    port_text = (host_and_port.rpartition("]")[2] if bracketed else host_and_port).partition(":")[2]
    port = None
    if port_text:  # "acme.ilucca.net:" has no port
        if not (port_text.isascii() and port_text.isdigit() and 1 <= int(port_text) <= 65535):
            raise LuccaConfigError(
                f"Invalid port in Lucca account URL {shown}: port {port_text}; expected a port "
                "from 1 to 65535, or none for the scheme's default, e.g. https://acme.ilucca.net"
            )
        port = int(port_text)
    if parts.scheme == "http" and not (allow_plain_http or is_loopback_host(hostname)):
        raise LuccaConfigError(
            f"Refusing plain http for {hostname}: the API key would travel unencrypted. "
            "Use https:// (plain http is only accepted for a local sandbox on a loopback address)."
        )
    netloc = hostname if ":" not in hostname else f"[{hostname}]"
    return f"{parts.scheme}://{netloc}{f':{port}' if port else ''}"


def validate_api_key(key: object) -> str:
    """The key without surrounding whitespace; refused unless it is printable ASCII.

    requests encodes headers as latin-1, so a zero-width space or a typographic apostrophe pasted
    with the key would otherwise fail at the first request (UnicodeEncodeError), and a space or a
    control character would be sent and answered 401. The message names the character and its
    position, never the key.
    """
    if not isinstance(key, str):
        raise LuccaConfigError(
            f"The Lucca API key must be text, got {type(key).__name__}: paste the key again."
        )
    stripped = key.strip()  # secrets backends often keep a trailing newline
    if not stripped:
        raise LuccaConfigError("The Lucca API key is empty.")
    offset = len(key) - len(key.lstrip())
    for index, char in enumerate(stripped):
        if "!" <= char <= "~":
            continue
        code = f"U+{ord(char):04X}"
        if char == " ":
            kind, why = f"a space ({code})", "a Lucca API key has no spaces"
        elif char < " " or char == "\x7f":
            kind, why = f"a control character ({code})", "a line break or tab is a copy error"
        else:
            name = unicodedata.name(char, "")
            kind = f"a non-ASCII character ({code}{f' {name}' if name else ''})"
            why = "a copy from a document, chat or PDF can add invisible or typographic characters"
        raise LuccaConfigError(
            f"The Lucca API key contains {kind} at position {offset + index + 1} of {len(key)}: "
            f"paste the key again ({why}); a key is printable ASCII only."
        )
    return stripped


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs, resolved once from an Airflow connection (or by hand).

    Every setting is checked here, before any request, against the ``*_RANGE`` constants of
    :mod:`airflow_provider_lucca.client.defaults`.

    :param base_url: the account URL; see :func:`normalize_base_url`.
    :param api_key: sent only to ``base_url``, in the ``Authorization`` header; printable ASCII.
    :param requests_per_minute: pacing budget; 50 is Lucca's documented limit per tenant, 0 disables
        pacing (for a sandbox without limit). At most 6000.
    :param page_size: items per page, 1..100.
    :param timeout: read timeout in seconds, above 0 and at most 300; the connect timeout is the
        smaller of it and 10 s.
    :param max_response_bytes: largest answer accepted, 1 byte to 100 MiB.
    """

    base_url: str
    api_key: str = field(repr=False)
    requests_per_minute: float = DEFAULT_REQUESTS_PER_MINUTE
    page_size: int = DEFAULT_PAGE_SIZE
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    allow_plain_http: bool = False
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "base_url",
            normalize_base_url(self.base_url, allow_plain_http=self.allow_plain_http),
        )
        object.__setattr__(self, "api_key", validate_api_key(self.api_key))
        low, high = PAGE_SIZE_RANGE
        if not _is_int(self.page_size) or not low <= self.page_size <= high:
            raise _bad("page_size", self.page_size, f"an integer from {low} to {high}")
        low, high = REQUESTS_PER_MINUTE_RANGE
        if not _is_finite(self.requests_per_minute) or not low <= self.requests_per_minute <= high:
            raise _bad(
                "requests_per_minute",
                self.requests_per_minute,
                f"a number from {low} (no pacing) to {high}",
            )
        high_timeout = TIMEOUT_RANGE[1]
        if not _is_finite(self.timeout) or not 0 < self.timeout <= high_timeout:
            raise _bad(
                "timeout",
                self.timeout,
                f"a finite number of seconds above 0 and at most {high_timeout:g}",
            )
        low, high = MAX_RESPONSE_BYTES_RANGE
        if not _is_int(self.max_response_bytes) or not low <= self.max_response_bytes <= high:
            raise _bad(
                "max_response_bytes",
                self.max_response_bytes,
                f"an integer number of bytes from {low} to {high}",
            )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """An int, or a float that is neither NaN nor infinite (ints compare exactly, any size)."""
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _bad(name: str, value: object, expected: str) -> LuccaConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return LuccaConfigError(f"Invalid {name}={shown}: expected {expected}.")
