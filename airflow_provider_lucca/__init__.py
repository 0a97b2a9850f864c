"""Apache Airflow provider for Lucca: realized trainings into object storage.

Kept import-light: Airflow reads :func:`get_provider_info` at start-up through the
``apache_airflow_provider`` entry point, before any hook is needed.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

CONN_TYPE = "lucca"


def get_provider_info() -> dict[str, Any]:
    """Provider metadata, including the declarative connection form the Airflow 3.3 UI renders."""
    return {
        "package-name": "airflow-provider-lucca",
        "name": "Lucca",
        "description": "Extract realized trainings from Lucca (HR SaaS) into object storage.",
        "versions": [__version__],
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
                "python-modules": ["airflow_provider_lucca.operators.realized_trainings"],
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
                        "schema": {"type": ["integer", "null"], "default": 50, "minimum": 0},
                    },
                    "page_size": {
                        "label": "Page size",
                        "description": "Records per request (Lucca's maximum is 100).",
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 100,
                            "minimum": 1,
                            "maximum": 100,
                        },
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Read timeout of one request; Lucca aborts requests at 5 s.",
                        "schema": {"type": ["integer", "null"], "default": 30, "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": (
                            "Retries of one request on 429, 408, 5xx and network errors, with "
                            "exponential backoff and Retry-After."
                        ),
                        "schema": {
                            "type": ["integer", "null"],
                            "default": 5,
                            "minimum": 0,
                            "maximum": 20,
                        },
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
