"""Settings shared by the example Lucca DAGs (this file defines no DAG).

Everything a deployment changes comes from the environment, read once at parse time (no metadata
DB or Variable lookup while parsing):

- ``LUCCA_OUTPUT_PATH``: dataset root (``s3://aws_default@lake/lucca/realized_trainings``...);
  defaults to ``data/lucca/realized_trainings`` in this repository, so DAGs run locally as cloned.
- ``LUCCA_CONN_ID``: the Lucca connection (default ``lucca_default``).
- ``LUCCA_POOL``: the Airflow pool that serialises calls to one tenant (default ``lucca_api``).
- ``LUCCA_START_DATE`` / ``LUCCA_CATCHUP``: first day and catchup of the daily DAG.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from airflow.sdk import Asset

from airflow_provider_lucca.operators.realized_trainings import asset_uri

DEFAULT_OUTPUT = (
    Path(__file__).resolve().parents[1] / "data" / "lucca" / "realized_trainings"
).as_uri()
OUTPUT_PATH = os.environ.get("LUCCA_OUTPUT_PATH") or DEFAULT_OUTPUT
LUCCA_CONN_ID = os.environ.get("LUCCA_CONN_ID", "lucca_default")
LUCCA_POOL = os.environ.get("LUCCA_POOL", "lucca_api")
START_DATE = date.fromisoformat(os.environ.get("LUCCA_START_DATE", "2025-01-01"))
CATCHUP = os.environ.get("LUCCA_CATCHUP", "true").strip().lower() in ("1", "true", "yes")
TIMEZONE = "Europe/Paris"

REALIZED_TRAININGS = Asset(name="lucca_realized_trainings", uri=asset_uri(OUTPUT_PATH))
