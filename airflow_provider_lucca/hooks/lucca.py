"""LuccaHook: maps an Airflow ``lucca`` connection to a :class:`LuccaClient`.

All HTTP behaviour (retries, pacing, paging, typed errors) lives in
:mod:`airflow_provider_lucca.client`; this module only reads the connection.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
from collections.abc import Iterator
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

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
from airflow_provider_lucca.client.metrics import Metrics
from airflow_provider_lucca.client.query import QueryParams

#: The UI's Test button should answer within seconds, not walk the whole retry budget. It keeps
#: the connection's other settings (timeout included): it tests what the tasks will use.
TEST_RETRY_POLICY = RetryPolicy(max_attempts=2, backoff_base=0.5, max_total_seconds=20.0)

#: Every key the connection's extra may hold; any other is refused (a typo would otherwise keep the
#: default of the setting meant, silently).
EXTRA_KEYS = ("allow_plain_http", "max_retries", "page_size", "requests_per_minute", "timeout")
_EXTRA_EXAMPLE = (
    f'{{"requests_per_minute": {DEFAULT_REQUESTS_PER_MINUTE}, "page_size": {DEFAULT_PAGE_SIZE}, '
    f'"timeout": {DEFAULT_TIMEOUT:g}, "max_retries": {DEFAULT_MAX_RETRIES}}}'
)


class LuccaHook(BaseHook):
    """Talks to one Lucca account through the ``lucca`` connection.

    The connection's Host is the account URL (``https://acme.ilucca.net``), its Password the API
    key; extras ``requests_per_minute``, ``page_size``, ``timeout``, ``max_retries`` and
    ``allow_plain_http`` tune the client (see the README). Everything is checked before any
    request, against the bounds of :mod:`airflow_provider_lucca.client.defaults`; an extra that is
    not a JSON object, or holds another key, is refused rather than ignored.

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
        extra = self._extra(conn.extra)
        settings: dict[str, Any] = {
            "requests_per_minute": self._extra_int(
                extra, "requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE, REQUESTS_PER_MINUTE_RANGE
            ),
            "page_size": self._extra_int(extra, "page_size", DEFAULT_PAGE_SIZE, PAGE_SIZE_RANGE),
            "timeout": self._extra_seconds(extra, "timeout", DEFAULT_TIMEOUT, TIMEOUT_RANGE),
            "allow_plain_http": self._extra_bool(extra, "allow_plain_http"),
            "retry": self._retry_policy
            or RetryPolicy(
                max_attempts=1
                + self._extra_int(extra, "max_retries", DEFAULT_MAX_RETRIES, MAX_RETRIES_RANGE)
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
        config = self.client_config
        # Imported here: the shared budget (airflow.cfg [lucca] budget_conn_id) is only read by
        # a task, never by the connection form or the DAG processor.
        from airflow_provider_lucca.hooks.budget import shared_budget

        budget = shared_budget(config.base_url, config.requests_per_minute)
        if budget is not None:
            self.log.info("Request budget of %s shared through Redis", config.base_url)
        return LuccaClient(config, logger=self.log, pacer=budget, metrics=self.metrics)

    @cached_property
    def metrics(self) -> Metrics:
        """Where the client's requests, retries, 429s and waits are counted: Airflow's metrics
        as ``lucca.<account>.*`` when ``[metrics]`` turns them on, else nowhere (README
        "Metrics")."""
        from airflow_provider_lucca.hooks.stats import airflow_metrics

        return airflow_metrics(self.client_config.base_url)

    def report_run(self, summary: object) -> None:
        """Count what a run wrote (records, days, reads) from its summary, under the same
        account as its requests; never raises."""
        from airflow_provider_lucca.hooks.stats import report_run

        try:
            report_run(self.metrics, summary)
        except Exception as exc:  # the run has committed: its metrics are not worth failing it
            self.log.warning("Lucca metrics of the run not sent (%s: %s)", type(exc).__name__, exc)

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
            config = self.client_config  # validated as for a task: a bad setting fails the test
            with LuccaClient(
                dataclasses.replace(config, retry=TEST_RETRY_POLICY), logger=self.log
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
            return False, _explain_transport(exc, config)
        except LuccaAPIError as exc:
            return False, str(exc)
        except LuccaError as exc:
            return False, f"Unexpected answer from {self.client_config.base_url}: {exc}"
        shown = "an unknown number of" if count is None else str(count)
        return True, f"Connected to {config.base_url}: {shown} realized trainings visible."

    def _extra(self, raw: object) -> dict[str, Any]:
        """The extra as a JSON object of known keys, read from the raw text.

        ``conn.extra_dejson`` logs text that is not JSON and returns ``{}``, which would run the
        hook with the defaults (no pacing settings) without a word; a JSON list breaks ``.get``.
        """
        where = f"Connection {self.lucca_conn_id!r}: extra must be a JSON object"
        expected = f"e.g. {_EXTRA_EXAMPLE}, or empty"
        if isinstance(raw, dict):  # not from Airflow's Connection, whose extra is text
            extra: object = raw
        elif raw is None or (isinstance(raw, str) and not raw.strip()):
            return {}
        elif isinstance(raw, str):
            try:
                extra = json.loads(raw)
            except ValueError as exc:
                # The position only: the text itself is not echoed.
                raise LuccaConfigError(
                    f"{where}, {expected}; it is not JSON (line {getattr(exc, 'lineno', '?')}, "
                    f"column {getattr(exc, 'colno', '?')}). Keys and strings take double quotes."
                ) from None
        else:
            extra = raw
        if extra is None:  # JSON null: no extra
            return {}
        if not isinstance(extra, dict):
            kind = {list: "a list", str: "a string", bool: "a boolean", int: "a number"}
            shown = kind.get(type(extra), "a number" if isinstance(extra, float) else "not one")
            raise LuccaConfigError(f"{where}, {expected}; it is {shown}.")
        for key in extra:
            if key not in EXTRA_KEYS:
                raise LuccaConfigError(
                    f"Connection {self.lucca_conn_id!r}: unknown extra key {key!r}"
                    f"{_did_you_mean(str(key))}; known keys: {', '.join(EXTRA_KEYS)}."
                )
        return extra

    def _extra_int(
        self, extra: dict[str, Any], name: str, default: int, bounds: tuple[int, int]
    ) -> int:
        raw = extra.get(name)
        if raw is None or raw == "":
            return default
        value = _as_int(raw)
        low, high = bounds
        if value is None or not low <= value <= high:
            raise LuccaConfigError(
                f"Connection {self.lucca_conn_id!r}: extra {name}={_shown(raw)} is invalid, "
                f"expected an integer from {low} to {high}."
            )
        return value

    def _extra_seconds(
        self, extra: dict[str, Any], name: str, default: float, bounds: tuple[float, float]
    ) -> float:
        raw = extra.get(name)
        if raw is None or raw == "":
            return default
        value = _as_number(raw)
        low, high = bounds
        if value is None or not low <= value <= high:
            raise LuccaConfigError(
                f"Connection {self.lucca_conn_id!r}: extra {name}={_shown(raw)} is invalid, "
                f"expected a number of seconds from {low:g} to {high:g}."
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
            f"Connection {self.lucca_conn_id!r}: extra {name}={_shown(raw)} is invalid, "
            "expected true or false."
        )


def _did_you_mean(key: str) -> str:
    """A hint for typos (``request_per_minute``), case slips and Airflow 2 ``extra__lucca__*``."""
    candidate = key.lower().removeprefix("extra__lucca__")
    if candidate in EXTRA_KEYS:
        return f" (did you mean {candidate!r}?)"
    close = difflib.get_close_matches(candidate, EXTRA_KEYS, n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown(raw: object) -> str:
    shown = repr(raw)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _as_number(raw: object) -> float | None:
    """A finite number from JSON or form values (``30``, ``"2.5"``); None for anything else."""
    if isinstance(raw, bool):
        return None
    try:
        number = float(str(raw).strip())
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def _as_int(raw: object) -> int | None:
    """An int from JSON or form values (``5``, ``"5"``, ``5.0``); None for anything else."""
    number = _as_number(raw)
    return int(number) if number is not None and number.is_integer() else None


def _with_scheme(conn: Any) -> str:
    """A Host without scheme: use the connection's schema field if it says http(s), else https.

    The Port field applies here only (a Host with a scheme carries its own port, if any). 0 means
    no port: Airflow 3.3.2's UI sends it for a connection without one.
    """
    scheme = conn.schema if conn.schema in ("http", "https") else "https"
    host = conn.host.strip()
    port = conn.port
    if port is None or port == 0:
        return f"{scheme}://{host}"
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise LuccaConfigError(
            f"its Port field is {port!r}: expected a port from 1 to 65535, or empty for the "
            "scheme's default (or put the port in the account URL, e.g. https://acme.ilucca.net)."
        )
    try:
        own = urlsplit(f"{scheme}://{host}").port
    except ValueError:
        own = None  # a malformed port in the Host: normalize_base_url says what is wrong
    if own is not None and own != port:
        raise LuccaConfigError(
            f"its Host {host!r} has its own port {own} and its Port field is {port}: keep one."
        )
    return f"{scheme}://{host}" if own is not None else f"{scheme}://{host}:{port}"


def _explain_transport(exc: LuccaRetriesExhaustedError, config: ClientConfig) -> str:
    cause = exc.__cause__
    base_url = config.base_url
    if isinstance(cause, requests.exceptions.ConnectTimeout):
        return f"Timed out connecting to {base_url}: check the account URL and the network route."
    if isinstance(cause, requests.Timeout):
        return (
            f"{base_url} did not answer within {config.timeout:g} s (the connection's timeout): "
            "Lucca may be slow, try again later."
        )
    if isinstance(cause, requests.ConnectionError):
        return (
            f"Cannot reach {base_url}: check the account URL (unknown host or refused connection)."
        )
    return str(exc)
