"""End-to-end fixtures: one real Airflow (api-server, scheduler, dag-processor) per session.

The stack is ``scripts/airflow_stack.py``: the Lucca sandbox (seed 42, 20,000 records over
2024-01-01..2026-12-31) in its own process, Airflow on free loopback ports with LocalExecutor and
SQLite, ``lucca_default`` pointing at the sandbox and the ``lucca_api`` pool. Every wait is bounded;
when startup fails, the tail of each component's log is printed with the error.
"""

from __future__ import annotations

import sys
import time
import urllib.error
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from airflow_stack import AirflowStack  # noqa: E402

DAG_IDS = ("lucca_realized_trainings_daily", "lucca_realized_trainings_history")
#: The dag-processor parses dags/ within seconds of being healthy; allow a loaded machine.
DAGS_PARSED_TIMEOUT = 120.0
COMPONENTS = ("api-server", "scheduler", "dag-processor", "sandbox")


def log_tail(home: Path, component: str, lines: int = 40) -> str:
    path = home / f"{component}.log"
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"----- {path}: missing -----"
    return f"----- last {len(text)} lines of {path} -----\n" + "\n".join(text)


def all_log_tails(home: Path, lines: int = 40) -> str:
    return "\n".join(log_tail(home, component, lines) for component in COMPONENTS)


def wait_for_dags(stack: AirflowStack) -> None:
    """Bounded wait until the example DAGs are serialized, and fail on any import error."""
    deadline = time.monotonic() + DAGS_PARSED_TIMEOUT
    missing: list[str] = list(DAG_IDS)
    while time.monotonic() < deadline:
        errors = stack.api("GET", "/api/v2/importErrors")["import_errors"]
        if errors:
            raise RuntimeError(f"dags/ has import errors: {errors}")
        missing = []
        for dag_id in DAG_IDS:
            try:
                stack.api("GET", f"/api/v2/dags/{dag_id}")
            except urllib.error.HTTPError as exc:
                if exc.code != 404:
                    raise
                missing.append(dag_id)
        if not missing:
            return
        time.sleep(2)
    raise RuntimeError(f"DAGs not parsed within {DAGS_PARSED_TIMEOUT:.0f} s: {missing}")


@pytest.fixture(scope="session")
def airflow_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    home = tmp_path_factory.mktemp("airflow-stack")
    # A task killed while the stack warms up (its first execution-API calls timing out) is
    # retried within seconds, not after the example DAGs' 5 minutes, which would hold back every
    # run of the DAG (one run at a time) that a test triggers meanwhile.
    stack = AirflowStack(home, env_overrides={"LUCCA_RETRY_DELAY_SECONDS": "5"})
    started = time.monotonic()
    try:
        stack.start()  # bounded: sandbox 60 s, CLI calls 300 s, health 120 s; stops on failure
        wait_for_dags(stack)
    except Exception as exc:
        stack.stop()
        pytest.fail(f"Airflow stack failed to start: {exc}\n{all_log_tails(home)}", pytrace=False)
    except BaseException:
        stack.stop()
        raise
    print(f"\nAirflow stack up in {time.monotonic() - started:.0f} s at {stack.url} ({home})")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def stack_logs(airflow_stack: AirflowStack) -> Callable[..., str]:
    """``stack_logs("scheduler", lines=60)``: a component's log tail, for failure messages."""

    def tail(*components: str, lines: int = 60) -> str:
        return "\n".join(log_tail(airflow_stack.home, name, lines) for name in components)

    return tail
