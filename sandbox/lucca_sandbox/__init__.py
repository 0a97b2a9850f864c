"""Lucca sandbox: a local, deterministic emulator of the realized-trainings v2 endpoint.

It lets the provider be developed, tested, demoed and benchmarked without a Lucca tenant,
including the failure modes a tenant produces (rate limits, gateway errors, dropped
connections). Standard library only, so importing it never pulls Airflow in.

Run it with ``python -m lucca_sandbox`` (or ``lucca-sandbox``), or in-process::

    with SandboxServer(SandboxConfig(records=500)) as server:
        requests.get(server.url + API_PATH, headers={"Authorization": "lucca application=..."})
"""

from __future__ import annotations

from .config import BOUNDS, DEFAULT_API_KEY, ORDERS, SandboxConfig
from .data import TRAINING_CATALOGUE, generate_records
from .faults import FAULT_KINDS, FaultSchedule
from .handler import API_PATH
from .moves import RecordMove
from .mutations import MutationSpec
from .ratelimit import RateLimiter
from .server import SandboxServer

__all__ = [
    "API_PATH",
    "BOUNDS",
    "DEFAULT_API_KEY",
    "FAULT_KINDS",
    "ORDERS",
    "TRAINING_CATALOGUE",
    "FaultSchedule",
    "MutationSpec",
    "RateLimiter",
    "RecordMove",
    "SandboxConfig",
    "SandboxServer",
    "generate_records",
]
