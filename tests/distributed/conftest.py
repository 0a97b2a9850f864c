"""Fixtures of the tests on the distributed engine: one real Celery deployment per session.

``scripts/distributed_stack.py`` starts PostgreSQL and Redis from Debian's binaries
(``scripts/system_packages.sh`` installs them) and Airflow with the CeleryExecutor: api-server,
scheduler, dag-processor and two Celery workers, each with its own hostname and TMPDIR. Here the
stack reads this repository's ``dags/`` (all paused: a test unpauses what it runs), with
``lucca_default`` on one sandbox process and the one-slot ``lucca_api`` pool. Every wait is
bounded; a failed start fails the session's tests with the tail of every component's log.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from distributed_stack import DistributedStack  # noqa: E402
from local_airflow import POOL, sandbox_connection  # noqa: E402

from lucca_sandbox.data import generate_records  # noqa: E402
from lucca_sandbox.process import SandboxProcess  # noqa: E402

#: The sandbox of ``lucca_default``: seed 42 (the CLI's default), this many records over these
#: days, this rate limit (the connection paces itself to it).
SANDBOX_RECORDS = 20000
SANDBOX_FIRST_DAY, SANDBOX_LAST_DAY = "2024-01-01", "2026-12-31"
SANDBOX_RPM = 600


@pytest.fixture(scope="session")
def stack_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The Lucca sandbox behind ``lucca_default``, in its own process."""
    log = tmp_path_factory.mktemp("stack-sandbox") / "sandbox.log"
    sandbox = SandboxProcess(
        [
            *("--records", str(SANDBOX_RECORDS)),
            *("--start", SANDBOX_FIRST_DAY, "--end", SANDBOX_LAST_DAY),
            *("--requests-per-minute", str(SANDBOX_RPM)),
        ],
        log_path=str(log),
    )
    with sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def sandbox_day_count() -> Callable[[date], int]:
    """How many records of a day the stack's sandbox serves, from its generator rather than
    from its API."""
    records = generate_records(
        42,
        SANDBOX_RECORDS,
        date.fromisoformat(SANDBOX_FIRST_DAY),
        date.fromisoformat(SANDBOX_LAST_DAY),
    )
    counts = Counter(date.fromisoformat(record["sessionEndsOn"]) for record in records)
    return lambda day: counts[day]


@pytest.fixture(scope="session")
def distributed_stack(
    tmp_path_factory: pytest.TempPathFactory, stack_sandbox: SandboxProcess
) -> Iterator[DistributedStack]:
    """The running Celery deployment; DAGs start paused (``stack.unpause(dag_id)``)."""
    home = tmp_path_factory.mktemp("distributed-airflow")
    stack = DistributedStack(
        home,
        env={"AIRFLOW_CONN_LUCCA_DEFAULT": sandbox_connection(stack_sandbox.url, SANDBOX_RPM)},
        pools={POOL: 1},
        dags_paused=True,
    )
    started = time.monotonic()
    try:
        stack.start()  # bounded; stops what it started and raises with the logs' tails
    except Exception as exc:
        pytest.fail(str(exc), pytrace=False)
    print(
        f"\nCelery stack up in {time.monotonic() - started:.0f} s at {stack.url} ({home}; "
        f"PostgreSQL :{stack.pg_port}, Redis :{stack.redis_port})"
    )
    try:
        yield stack
    finally:
        stack.stop()
