"""The local Airflow environment shared by `make demo`, `make airflow` and the end-to-end tests.

One place decides how a throw-away Airflow is configured here: SQLite in its own AIRFLOW_HOME,
no example DAGs, this repository's dags/ folder, the Lucca connection in an environment variable
(`make demo`) or in the metadata database (`make airflow`, whose UI lists and edits it).
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


def sandbox_connection(url: str, requests_per_minute: int, *, port: int | None = None) -> str:
    """The ``lucca_default`` connection (JSON) for the sandbox at ``url``.

    :param port: also set the connection's port field. The hook reads the port from the URL; the
        field only matters to Airflow 3.3.2's UI, whose Test button sends ``port: 0`` for a
        connection without one, which its API refuses (apache/airflow#73298).
    """
    connection: dict[str, object] = {
        "conn_type": "lucca",
        "host": url,
        "password": SANDBOX_KEY,
        "extra": {"requests_per_minute": requests_per_minute, "page_size": 100},
    }
    if port is not None:
        connection["port"] = port
    return json.dumps(connection)


def real_account_connection() -> str | None:
    """The user's own Lucca account, from ``LUCCA_HOST`` + ``LUCCA_API_KEY``, if both are set."""
    host, key = os.environ.get("LUCCA_HOST"), os.environ.get("LUCCA_API_KEY")
    if not (host and key):
        return None
    return json.dumps({"conn_type": "lucca", "host": host, "password": key, "extra": {}})


def airflow_env(
    home: Path, output_path: str, lucca_conn: str | None, **overrides: str
) -> dict[str, str]:
    """The environment of every Airflow command and component here.

    :param lucca_conn: ``lucca_default`` as ``AIRFLOW_CONN_LUCCA_DEFAULT``; None when it lives in
        the metadata database (:func:`store_connection`).
    """
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
            "LUCCA_OUTPUT_PATH": output_path,
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    if lucca_conn is not None:
        env["AIRFLOW_CONN_LUCCA_DEFAULT"] = lucca_conn
    else:
        # A connection from the environment hides the database's one of the same id.
        env.pop("AIRFLOW_CONN_LUCCA_DEFAULT", None)
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


def store_connection(env: dict[str, str], conn_id: str, conn_json: str) -> None:
    """Create or replace a connection in the metadata database, where the UI lists it (one CLI
    call: each costs seconds of Airflow start-up). The file holding it is removed at once."""
    home = Path(env["AIRFLOW_HOME"])
    path = home / f".{conn_id}.connection.json"
    path.write_text(json.dumps({conn_id: json.loads(conn_json)}))
    path.chmod(0o600)
    try:
        airflow(env, "connections", "import", "--overwrite", str(path))
    finally:
        path.unlink(missing_ok=True)


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
