"""Lucca HTTP client with no Airflow dependency: config, retries, pacing, pagination, errors."""

from airflow_provider_lucca.client.client import (
    REALIZED_TRAININGS_PATH,
    ClientStats,
    LuccaClient,
    Page,
)
from airflow_provider_lucca.client.config import ClientConfig, normalize_base_url
from airflow_provider_lucca.client.errors import (
    LuccaAPIError,
    LuccaAuthError,
    LuccaConfigError,
    LuccaError,
    LuccaNotFoundError,
    LuccaRateLimitError,
    LuccaRedirectError,
    LuccaRequestError,
    LuccaResponseError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
    LuccaTLSError,
)
from airflow_provider_lucca.client.pacing import RequestPacer
from airflow_provider_lucca.client.retry import RetryPolicy, parse_retry_after

__all__ = [
    "REALIZED_TRAININGS_PATH",
    "ClientConfig",
    "ClientStats",
    "LuccaAPIError",
    "LuccaAuthError",
    "LuccaClient",
    "LuccaConfigError",
    "LuccaError",
    "LuccaNotFoundError",
    "LuccaRateLimitError",
    "LuccaRedirectError",
    "LuccaRequestError",
    "LuccaResponseError",
    "LuccaRetriesExhaustedError",
    "LuccaServerError",
    "LuccaTLSError",
    "Page",
    "RequestPacer",
    "RetryPolicy",
    "normalize_base_url",
    "parse_retry_after",
]
