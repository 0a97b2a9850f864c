"""Client configuration: the account URL rules and the settings a connection maps to."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.client.query import validate_page_size
from airflow_provider_lucca.client.retry import RetryPolicy

DEFAULT_REQUESTS_PER_MINUTE = 50
DEFAULT_PAGE_SIZE = 100
DEFAULT_TIMEOUT = 30.0
#: A page of 100 realized trainings is a few tens of kilobytes; anything near this is not one.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024


_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|[0-9A-Fa-f:.]+")


def is_loopback_host(hostname: str) -> bool:
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def normalize_base_url(host: str | None, *, allow_plain_http: bool = False) -> str:
    """``scheme://host[:port]`` from what people paste in the account URL field.

    ``acme.ilucca.net``, ``https://acme.ilucca.net/`` and sandbox hosts are accepted. Plain http is
    refused except on loopback (the local sandbox) or with ``allow_plain_http`` (a sandbox on a
    private container network): the API key must never cross a network in clear text.
    """
    text = (host or "").strip()
    if not text:
        raise LuccaConfigError(
            "The Lucca account URL is empty: expected e.g. https://acme.ilucca.net"
        )
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    expected = "expected the account URL alone, e.g. https://acme.ilucca.net"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LuccaConfigError(f"Invalid Lucca account URL {host!r}: {expected}.")
    if parts.username or parts.password:
        raise LuccaConfigError(
            "Invalid Lucca account URL: it contains credentials; put the API key in the "
            "connection's API key (password) field, not in the URL."
        )
    if parts.query or parts.fragment or parts.path not in ("", "/"):
        raise LuccaConfigError(
            f"Invalid Lucca account URL {host!r}: {expected} (no path or query)."
        )
    if not _HOSTNAME.fullmatch(parts.hostname):
        raise LuccaConfigError(f"Invalid host in Lucca account URL {host!r}: {expected}.")
    try:
        port = parts.port
    except ValueError as exc:
        raise LuccaConfigError(f"Invalid port in Lucca account URL {host!r}.") from exc
    if parts.scheme == "http" and not (allow_plain_http or is_loopback_host(parts.hostname)):
        raise LuccaConfigError(
            f"Refusing plain http for {parts.hostname}: the API key would travel unencrypted. "
            "Use https:// (plain http is only accepted for a local sandbox on a loopback address)."
        )
    netloc = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{netloc}{f':{port}' if port else ''}"


@dataclass(frozen=True)
class ClientConfig:
    """Everything the client needs, resolved once from an Airflow connection (or by hand).

    :param base_url: the account URL; see :func:`normalize_base_url`.
    :param api_key: sent only to ``base_url``, in the ``Authorization`` header.
    :param requests_per_minute: pacing budget; 50 is Lucca's documented limit per tenant, 0 disables
        pacing (for a sandbox without limit).
    :param page_size: items per page, 1..100.
    :param timeout: read timeout in seconds; the connect timeout is the smaller of it and 10 s.
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
        # Secrets backends often keep a trailing newline; a control character would otherwise
        # surface as an untyped header error that prints the key unmasked.
        key = (self.api_key or "").strip()
        if not key:
            raise LuccaConfigError("The Lucca API key is empty.")
        if any(ord(char) < 32 or ord(char) == 127 for char in key):
            raise LuccaConfigError("The Lucca API key contains control characters.")
        object.__setattr__(self, "api_key", key)
        validate_page_size(self.page_size)
        if self.requests_per_minute < 0:
            raise LuccaConfigError(
                f"Invalid requests_per_minute={self.requests_per_minute!r}: expected 0 (no pacing) "
                "or a positive number."
            )
        if self.max_response_bytes <= 0:
            raise LuccaConfigError(
                f"Invalid max_response_bytes={self.max_response_bytes!r}: expected bytes > 0."
            )
        if not self.timeout > 0:
            raise LuccaConfigError(f"Invalid timeout={self.timeout!r}: expected seconds > 0.")
