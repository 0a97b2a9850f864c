"""LuccaHook: maps an Airflow ``lucca`` connection to a :class:`LuccaClient`.

All HTTP behaviour (retries, pacing, paging, typed errors) lives in
:mod:`airflow_provider_lucca.client`; this module only reads the connection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import cached_property
from typing import Any

import requests
from airflow.sdk import BaseHook

from airflow_provider_lucca import CONN_TYPE
from airflow_provider_lucca.client import (
    ClientConfig,
    LuccaAPIError,
    LuccaAuthError,
    LuccaClient,
    LuccaConfigError,
    LuccaError,
    LuccaRetriesExhaustedError,
    Page,
    RetryPolicy,
)
from airflow_provider_lucca.client.query import QueryParams

#: The UI's Test button should answer within seconds, not walk the whole retry budget.
TEST_RETRY_POLICY = RetryPolicy(max_attempts=2, backoff_base=0.5, max_total_seconds=20.0)


class LuccaHook(BaseHook):
    """Talks to one Lucca account through the ``lucca`` connection.

    The connection's Host is the account URL (``https://acme.ilucca.net``), its Password the API
    key; extras ``requests_per_minute``, ``page_size``, ``timeout``, ``max_retries`` and
    ``allow_plain_http`` tune the client (see the README).

    :param lucca_conn_id: the Airflow connection id.
    :param retry_policy: overrides the policy built from the connection's ``max_retries``.
    """

    conn_name_attr = "lucca_conn_id"
    default_conn_name = "lucca_default"
    conn_type = CONN_TYPE
    hook_name = "Lucca"

    def __init__(
        self, lucca_conn_id: str = default_conn_name, *, retry_policy: RetryPolicy | None = None
    ) -> None:
        super().__init__()
        self.lucca_conn_id = lucca_conn_id
        self._retry_policy = retry_policy

    @cached_property
    def client_config(self) -> ClientConfig:
        conn = self.get_connection(self.lucca_conn_id)
        if conn.password:
            from airflow.sdk.log import mask_secret

            mask_secret(conn.password)
        if not conn.host:
            raise LuccaConfigError(
                f"Connection {self.lucca_conn_id!r} has no Host: set it to the Lucca account URL, "
                "e.g. https://acme.ilucca.net"
            )
        if not conn.password:
            raise LuccaConfigError(
                f"Connection {self.lucca_conn_id!r} has no Password: set it to the Lucca API key."
            )
        extra = conn.extra_dejson
        settings: dict[str, Any] = {
            "requests_per_minute": self._extra_int(extra, "requests_per_minute", 50, minimum=0),
            "page_size": self._extra_int(extra, "page_size", 100, minimum=1, maximum=100),
            "timeout": self._extra_int(extra, "timeout", 30, minimum=1),
            "allow_plain_http": self._extra_bool(extra, "allow_plain_http"),
            "retry": self._retry_policy
            or RetryPolicy(
                max_attempts=1 + self._extra_int(extra, "max_retries", 5, minimum=0, maximum=20)
            ),
        }
        try:
            return ClientConfig(
                base_url=conn.host if "://" in conn.host else _with_scheme(conn),
                api_key=conn.password,
                **settings,
            )
        except LuccaConfigError as exc:
            raise LuccaConfigError(f"Connection {self.lucca_conn_id!r}: {exc}") from exc

    @cached_property
    def client(self) -> LuccaClient:
        return LuccaClient(self.client_config, logger=self.log)

    def close(self) -> None:
        """Close the HTTP session, if one was opened (workers run many tasks per process)."""
        if "client" in self.__dict__:
            self.client.close()
            del self.__dict__["client"]

    def paginate(self, path: str, params: QueryParams) -> Iterator[Page]:
        return self.client.paginate(path, params)

    def iter_realized_trainings(self, **filters: Any) -> Iterator[Page]:
        """Pages of realized trainings; see :meth:`LuccaClient.iter_realized_trainings`."""
        return self.client.iter_realized_trainings(**filters)

    def test_connection(self) -> tuple[bool, str]:
        """Back the UI's Test button with one ``limit=1`` request and an actionable message."""
        try:
            config = self.client_config
            with LuccaClient(
                dataclasses.replace(config, retry=TEST_RETRY_POLICY, timeout=10.0),
                logger=self.log,
            ) as client:
                count = client.check()
        except LuccaConfigError as exc:
            return False, str(exc)
        except LuccaAuthError as exc:
            if exc.status == 401:
                return (
                    False,
                    "Lucca refused the API key (HTTP 401): it is wrong or revoked.",
                )
            return False, (
                "The API key is valid but has no rights to realized trainings (HTTP 403): give its "
                "role access to Lucca Training in the API keys admin."
            )
        except LuccaRetriesExhaustedError as exc:
            return False, _explain_transport(exc, self.client_config.base_url)
        except LuccaAPIError as exc:
            return False, str(exc)
        except LuccaError as exc:
            return False, f"Unexpected answer from {self.client_config.base_url}: {exc}"
        shown = "an unknown number of" if count is None else str(count)
        return True, f"Connected to {config.base_url}: {shown} realized trainings visible."

    def _extra_int(
        self,
        extra: dict[str, Any],
        name: str,
        default: int,
        *,
        minimum: int,
        maximum: int | None = None,
    ) -> int:
        raw = extra.get(name)
        if raw is None or raw == "":
            return default
        value = _as_int(raw)
        if value is None or value < minimum or (maximum is not None and value > maximum):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise LuccaConfigError(
                f"Connection {self.lucca_conn_id!r}: extra {name}={raw!r} is invalid, expected an "
                f"integer {bounds}."
            )
        return value

    def _extra_bool(self, extra: dict[str, Any], name: str) -> bool:
        raw = extra.get(name, False)
        if isinstance(raw, bool):
            return raw
        if str(raw).strip().lower() in ("true", "1", "yes"):
            return True
        if str(raw).strip().lower() in ("false", "0", "no", "", "none"):
            return False
        raise LuccaConfigError(
            f"Connection {self.lucca_conn_id!r}: extra {name}={raw!r} is invalid, "
            "expected true or false."
        )


def _as_int(raw: object) -> int | None:
    """An int from JSON or form values (``5``, ``"5"``, ``5.0``); None for anything else."""
    if isinstance(raw, bool):
        return None
    try:
        number = float(str(raw).strip())
    except ValueError:
        return None
    return int(number) if number.is_integer() else None


def _with_scheme(conn: Any) -> str:
    """A Host without scheme: use the connection's schema field if it says http(s), else https."""
    scheme = conn.schema if conn.schema in ("http", "https") else "https"
    port = f":{conn.port}" if conn.port else ""
    return f"{scheme}://{conn.host}{port}"


def _explain_transport(exc: LuccaRetriesExhaustedError, base_url: str) -> str:
    cause = exc.__cause__
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return f"Timed out connecting to {base_url}: check the account URL and the network route."
    if isinstance(cause, requests.Timeout):
        return f"{base_url} did not answer within 10 s: Lucca may be slow, try again later."
    if isinstance(cause, requests.ConnectionError):
        return (
            f"Cannot reach {base_url}: check the account URL (unknown host or refused connection)."
        )
    return str(exc)
