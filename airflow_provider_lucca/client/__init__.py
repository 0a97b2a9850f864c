"""Lucca HTTP client with no Airflow dependency: config, retries, pacing, pagination, errors.

The names of :mod:`~airflow_provider_lucca.client.client` (``LuccaClient``, ``ClientStats``,
``REALIZED_TRAININGS_PATH``) are imported on first use: that module needs ``requests``, a quarter
of a second to import, and Airflow reads the connection form's defaults from
:mod:`~airflow_provider_lucca.client.defaults` at every start-up, before any hook runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from airflow_provider_lucca.client.config import ClientConfig, normalize_base_url
from airflow_provider_lucca.client.errors import (
    LuccaAPIError,
    LuccaAuthError,
    LuccaConfigError,
    LuccaError,
    LuccaNotFoundError,
    LuccaNotJSONPageError,
    LuccaRateLimitError,
    LuccaRedirectError,
    LuccaRequestError,
    LuccaResponseError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
    LuccaTLSError,
    LuccaTooSlowError,
)
from airflow_provider_lucca.client.metrics import NO_METRICS, Metrics, NoMetrics
from airflow_provider_lucca.client.pacing import RequestPacer
from airflow_provider_lucca.client.paging import Page
from airflow_provider_lucca.client.retry import RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    from airflow_provider_lucca.client.client import (
        REALIZED_TRAININGS_PATH,
        ClientStats,
        LuccaClient,
    )

_FROM_CLIENT_MODULE = frozenset({"REALIZED_TRAININGS_PATH", "ClientStats", "LuccaClient"})


def __getattr__(name: str) -> Any:
    if name in _FROM_CLIENT_MODULE:
        return getattr(importlib.import_module("airflow_provider_lucca.client.client"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "NO_METRICS",
    "REALIZED_TRAININGS_PATH",
    "ClientConfig",
    "ClientStats",
    "LuccaAPIError",
    "LuccaAuthError",
    "LuccaClient",
    "LuccaConfigError",
    "LuccaError",
    "LuccaNotFoundError",
    "LuccaNotJSONPageError",
    "LuccaRateLimitError",
    "LuccaRedirectError",
    "LuccaRequestError",
    "LuccaResponseError",
    "LuccaRetriesExhaustedError",
    "LuccaServerError",
    "LuccaTLSError",
    "LuccaTooSlowError",
    "Metrics",
    "NoMetrics",
    "Page",
    "RequestPacer",
    "RetryPolicy",
    "normalize_base_url",
    "parse_retry_after",
]
