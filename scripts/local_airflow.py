"""The local Airflow environment shared by `make demo`, `make airflow` and the end-to-end tests.

One place decides how a throw-away Airflow is configured here: SQLite in its own AIRFLOW_HOME,
no example DAGs, this repository's dags/ folder, the Lucca connection in an environment variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from lucca_sandbox import DEFAULT_API_KEY as SANDBOX_KEY

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
POOL = "lucca_api"


def sandbox_connection(url: str, requests_per_minute: int) -> str:
    """``AIRFLOW_CONN_LUCCA_DEFAULT`` for the sandbox at ``url``."""
    return json.dumps(
        {
            "conn_type": "lucca",
            "host": url,
            "password": SANDBOX_KEY,
            "extra": {"requests_per_minute": requests_per_minute, "page_size": 100},
        }
    )


def real_account_connection() -> str | None:
    """The user's own Lucca account, from ``LUCCA_HOST`` + ``LUCCA_API_KEY``, if both are set."""
    host, key = os.environ.get("LUCCA_HOST"), os.environ.get("LUCCA_API_KEY")
    if not (host and key):
        return None
    return json.dumps({"conn_type": "lucca", "host": host, "password": key, "extra": {}})


def airflow_env(home: Path, output_path: str, lucca_conn: str, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    # A stack started from pytest inherits tests/conftest.py's AIRFLOW__CORE__UNIT_TEST_MODE=True:
    # Airflow then loads unit_tests.cfg instead of a normal config and its scheduler never sleeps
    # between loops (one core at 100 %, SQLite locked more often). These are real components.
    env.pop("AIRFLOW__CORE__UNIT_TEST_MODE", None)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__TEST_CONNECTION": "Enabled",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "AIRFLOW_CONN_LUCCA_DEFAULT": lucca_conn,
            "LUCCA_OUTPUT_PATH": output_path,
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    env.update(overrides)
    home.mkdir(parents=True, exist_ok=True)
    return env


def airflow(env: dict[str, str], *args: str, quiet: bool = True, timeout: float = 300) -> str:
    """Run the ``airflow`` CLI of this venv; raise with its output if it fails."""
    result = subprocess.run(
        [str(VENV_BIN / "airflow"), *args],
        env=env,
        capture_output=quiet,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"airflow {' '.join(args)} failed ({result.returncode}):\n"
            f"{(result.stdout or '')[-3000:]}{(result.stderr or '')[-3000:]}"
        )
    return result.stdout or ""


def prepare_metadata_db(env: dict[str, str]) -> None:
    """Migrate the SQLite DB (idempotent) and create the pool that serialises Lucca calls."""
    airflow(env, "db", "migrate")
    airflow(env, "pools", "set", POOL, "1", "Lucca API: one extraction at a time per tenant")


def health_problem(url: str) -> str | None:
    """None when the api-server at ``url`` answers and reports its metadata database, scheduler
    and dag-processor healthy; otherwise what it said (or why it could not be asked)."""
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            text: str = response.read().decode()
        health = json.loads(text)
    except (OSError, ValueError) as exc:
        return str(exc)
    components = ("metadatabase", "scheduler", "dag_processor")
    if all((health.get(name) or {}).get("status") == "healthy" for name in components):
        return None
    return text
