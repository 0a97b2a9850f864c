"""Fixtures of the tests on the distributed engine: real Celery deployments.

``scripts/distributed_stack.py`` starts PostgreSQL and Redis from Debian's binaries
(``scripts/system_packages.sh`` installs them) and Airflow with the CeleryExecutor: api-server,
scheduler, dag-processor and two Celery workers, each with its own hostname and TMPDIR. Every wait
is bounded; a failed start fails the module's tests with the tail of every component's log.

A stack is module-scoped: it is stopped once its module's tests are done, so it does not load the
machine while the rest of the suite runs, and each module can start the deployment it needs with
:func:`start_stack`. ``distributed_stack`` is the smoke test's: this repository's ``dags/``, all
paused (a test unpauses what it runs), ``lucca_default`` on one sandbox, the one-slot ``lucca_api``
pool.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

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

Env = Mapping[str, str] | Callable[[DistributedStack], Mapping[str, str]]


@pytest.fixture(scope="session")
def start_stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., contextlib.AbstractContextManager[DistributedStack]]:
    """``with start_stack(env=..., pools=..., dags_paused=True) as stack:`` a running stack in a
    fresh home, stopped on exit; a failed start fails the test with the components' logs.

    ``env`` may be a function of the (not yet started) stack, whose ports are already chosen:
    ``env=lambda stack: {"AIRFLOW_CONN_BUDGET": stack.redis_url(1)}``. Other keyword arguments
    go to :class:`DistributedStack`.
    """

    @contextlib.contextmanager
    def start(
        name: str = "distributed-airflow", *, env: Env | None = None, **options: Any
    ) -> Iterator[DistributedStack]:
        stack = DistributedStack(tmp_path_factory.mktemp(name), **options)
        stack.extra_env.update((env(stack) if callable(env) else env) or {})
        started = time.monotonic()
        try:
            stack.start()  # bounded; stops what it started and raises with the logs' tails
        except Exception as exc:
            pytest.fail(str(exc), pytrace=False)
        print(
            f"\nCelery stack up in {time.monotonic() - started:.0f} s at {stack.url} "
            f"({stack.home}; PostgreSQL :{stack.pg_port}, Redis :{stack.redis_port})"
        )
        try:
            yield stack
        finally:
            stack.stop()

    return start


@pytest.fixture(scope="module")
def stack_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxProcess]:
    """The Lucca sandbox behind the smoke stack's ``lucca_default``, in its own process."""
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
    """How many records of a day the smoke stack's sandbox serves, from its generator rather
    than from its API."""
    records = generate_records(
        42,
        SANDBOX_RECORDS,
        date.fromisoformat(SANDBOX_FIRST_DAY),
        date.fromisoformat(SANDBOX_LAST_DAY),
    )
    counts = Counter(date.fromisoformat(record["sessionEndsOn"]) for record in records)
    return lambda day: counts[day]


@pytest.fixture(scope="module")
def distributed_stack(
    start_stack: Callable[..., contextlib.AbstractContextManager[DistributedStack]],
    stack_sandbox: SandboxProcess,
) -> Iterator[DistributedStack]:
    """The smoke test's running deployment; DAGs start paused (``stack.unpause(dag_id)``)."""
    with start_stack(
        env={"AIRFLOW_CONN_LUCCA_DEFAULT": sandbox_connection(stack_sandbox.url, SANDBOX_RPM)},
        pools={POOL: 1},
        dags_paused=True,
    ) as stack:
        yield stack
