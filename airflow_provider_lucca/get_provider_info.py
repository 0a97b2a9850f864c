"""Provider metadata for Airflow, read at start-up through the ``apache_airflow_provider`` entry
point (``airflow_provider_lucca.get_provider_info:get_provider_info``), as Airflow's own providers
do.

The connection form's defaults and bounds are the client's own constants
(:mod:`airflow_provider_lucca.client.defaults`), which ``LuccaHook`` and ``ClientConfig`` check
against: the form cannot offer a value the hook refuses. Kept import-light: nothing here imports
Airflow, ``requests`` or the hook.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_lucca import CONN_TYPE, __version__
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


def _integer_field(default: float, bounds: tuple[float, float]) -> dict[str, Any]:
    """The JSON schema of an optional whole-number field (the form offers whole seconds)."""
    low, high = bounds
    return {
        "type": ["integer", "null"],
        "default": int(default),
        "minimum": int(low),
        "maximum": int(high),
    }


def get_provider_info() -> dict[str, Any]:
    """Provider metadata, including the declarative connection form the Airflow 3.3 UI renders."""
    return {
        "package-name": "airflow-provider-lucca",
        "name": "Lucca",
        "description": "Extract realized trainings from Lucca (HR SaaS) into object storage.",
        "versions": [__version__],
        "config": {
            "lucca": {
                "description": "Settings of the Lucca provider shared by every DAG.",
                "options": {
                    "budget_conn_id": {
                        "description": (
                            "A Redis connection (redis://host:port/db) through which every "
                            "process on every worker shares each Lucca account's request budget "
                            "(its connection's requests_per_minute). Empty: each task paces "
                            "itself alone (README 'Scaling')."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "lucca_budget",
                        "default": "",
                    }
                },
            }
        },
        "integrations": [
            {
                "integration-name": "Lucca",
                "external-doc-url": "https://developers.lucca.fr/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Lucca",
                "python-modules": ["airflow_provider_lucca.hooks.lucca"],
            }
        ],
        "operators": [
            {
                "integration-name": "Lucca",
                "python-modules": [
                    "airflow_provider_lucca.operators.realized_trainings",
                    "airflow_provider_lucca.operators.reconcile",
                ],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "airflow_provider_lucca.hooks.lucca.LuccaHook",
                "hook-name": "Lucca",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"host": "Lucca account URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://acme.ilucca.net",
                        "password": "API key from Lucca admin > Authentication, SSO and API",
                    },
                },
                "conn-fields": {
                    "requests_per_minute": {
                        "label": "Requests per minute",
                        "description": (
                            "Client-side pacing. Lucca allows 50 requests/min per tenant, shared "
                            "by all its integrations; 0 disables pacing."
                        ),
                        "schema": _integer_field(
                            DEFAULT_REQUESTS_PER_MINUTE, REQUESTS_PER_MINUTE_RANGE
                        ),
                    },
                    "page_size": {
                        "label": "Page size",
                        "description": "Records per request (Lucca's maximum is 100).",
                        "schema": _integer_field(DEFAULT_PAGE_SIZE, PAGE_SIZE_RANGE),
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Read timeout of one request; Lucca aborts requests at 5 s.",
                        "schema": _integer_field(DEFAULT_TIMEOUT, TIMEOUT_RANGE),
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": (
                            "Retries of one request on 429, 408, 5xx and network errors, with "
                            "exponential backoff and Retry-After."
                        ),
                        "schema": _integer_field(DEFAULT_MAX_RETRIES, MAX_RETRIES_RANGE),
                    },
                    "allow_plain_http": {
                        "label": "Allow plain http (sandbox only)",
                        "description": (
                            "Only for a Lucca sandbox emulator on a private network "
                            "(docker-compose). Never for a real account."
                        ),
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                },
            }
        ],
    }
