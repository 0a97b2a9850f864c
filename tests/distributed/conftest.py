"""Fixtures of the tests on the distributed engine: real Celery deployments.

``scripts/distributed_stack.py`` starts PostgreSQL and Redis from Debian's binaries
(``scripts/system_packages.sh`` installs them) and Airflow with the CeleryExecutor: api-server,
scheduler, dag-processor and two Celery workers, each with its own hostname and TMPDIR. Every wait
is bounded; a failed start fails the module's tests with the tail of every component's log.

A stack is module-scoped: it is stopped once its module's tests are done, so it does not load the
machine while the rest of the suite runs, and each module can start the deployment it needs with
:func:`start_stack` (``test_fleet_celery.py``: three tenants, a backfill and a history load).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from distributed_stack import DistributedStack  # noqa: E402

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
