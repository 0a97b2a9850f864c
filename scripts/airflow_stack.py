"""`make airflow`: the Lucca sandbox plus a light local Airflow (api-server, scheduler,
dag-processor; LocalExecutor; SQLite; parallelism 4), with ``lucca_default`` on the sandbox.

Also used by the end-to-end tests (backfill on a real scheduler, the connection form in a
browser) as a context manager that starts everything on free loopback ports and stops it by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from local_airflow import (
    ROOT,
    VENV_BIN,
    airflow,
    airflow_env,
    health_problem,
    prepare_metadata_db,
    sandbox_connection,
    store_connection,
)

from lucca_sandbox.process import SandboxProcess

HEALTH_TIMEOUT = 120.0
SANDBOX_RPM = 600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class AirflowStack:
    """Sandbox + api-server + scheduler + dag-processor under ``home``.

    :param port: the api-server's port (0 picks a free one).
    :param sandbox_args: flags for the sandbox (records, date range, limit...).
    """

    def __init__(
        self,
        home: Path,
        *,
        port: int = 0,
        output_path: str | None = None,
        sandbox_args: list[str] | None = None,
        env_overrides: dict[str, str] | None = None,
    ) -> None:
        self.home = home
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output_path = output_path or (home / "lake" / "realized_trainings").as_uri()
        self.sandbox = SandboxProcess(
            sandbox_args
            or [
                *("--records", "20000", "--start", "2024-01-01", "--end", "2026-12-31"),
                *("--requests-per-minute", str(SANDBOX_RPM)),
            ],
            log_path=str(home / "sandbox.log"),
        )
        self.env_overrides = env_overrides or {}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self._token = ""

    def start(self) -> AirflowStack:
        self.home.mkdir(parents=True, exist_ok=True)
        self.sandbox.start()
        secret = secrets.token_hex(16)
        self.env = airflow_env(
            self.home,
            self.output_path,
            None,  # lucca_default lives in the metadata database: the UI lists and edits it
            AIRFLOW__API__PORT=str(self.port),
            AIRFLOW__API__HOST="127.0.0.1",
            AIRFLOW__API__BASE_URL=self.url,
            AIRFLOW__CORE__EXECUTION_API_SERVER_URL=f"{self.url}/execution/",
            AIRFLOW__API_AUTH__JWT_SECRET=secret,
            AIRFLOW__API__SECRET_KEY=secret,
            AIRFLOW__API__WORKERS="1",
            AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
            AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
            # The local stack has no years to catch up on: runs come from backfills and triggers.
            LUCCA_CATCHUP="false",
            **self.env_overrides,
        )
        try:
            prepare_metadata_db(self.env)
            store_connection(
                self.env,
                "lucca_default",
                sandbox_connection(
                    self.sandbox.url, SANDBOX_RPM, port=urlsplit(self.sandbox.url).port
                ),
            )
            for component in ("api-server", "scheduler", "dag-processor"):
                log = open(self.home / f"{component}.log", "ab")  # noqa: SIM115
                self.processes[component] = subprocess.Popen(
                    [str(VENV_BIN / "airflow"), component],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
                log.close()
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self) -> None:
        """Bounded wait until the api-server answers and scheduler and dag-processor report."""
        deadline = time.monotonic() + HEALTH_TIMEOUT
        last = ""
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited early; see {self.home}/{name}.log")
            problem = health_problem(self.url)
            if problem is None:
                return
            last = problem
            time.sleep(1)
        raise RuntimeError(f"Airflow was not healthy within {HEALTH_TIMEOUT:.0f} s: {last}")

    def api(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Call the REST API (``/api/v2/...``) with a token from the simple auth manager."""
        if not self._token:
            self._token = self._request("GET", "/auth/token", None)["access_token"]
        return self._request(method, path, payload, token=self._token)

    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None, token: str = ""
    ) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if payload is None else json.dumps(payload).encode(),
            method=method,
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def cli(self, *args: str, retries: int = 5) -> str:
        """The airflow CLI against this stack; retried on SQLite's 'database is locked'."""
        for attempt in range(retries):
            try:
                return airflow(self.env, *args)
            except RuntimeError as exc:
                if "database is locked" not in str(exc) or attempt == retries - 1:
                    raise
                time.sleep(1 + attempt)
        raise AssertionError("unreachable")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.processes.clear()
        self.sandbox.stop()

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Local Airflow + Lucca sandbox")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--home", type=Path, default=ROOT / "data" / "airflow")
    args = parser.parse_args(argv)
    print("Starting the Lucca sandbox and Airflow (api-server, scheduler, dag-processor)...")
    with AirflowStack(args.home, port=args.port) as stack:
        print(f"\nAirflow UI:      {stack.url}  (no login: simple auth manager, all admins)")
        print(f"Lucca sandbox:   {stack.sandbox.url}  (connection lucca_default points here)")
        print(f"Data written to: {stack.output_path}")
        print(f"Logs:            {args.home}/*.log")
        print("\nBackfill example (another terminal), Paris days 2025-03-01..2025-03-07:")
        print(f"  AIRFLOW_HOME={args.home} .venv/bin/airflow backfill create \\")
        print("    --dag-id lucca_realized_trainings_daily \\")
        print("    --from-date 2025-03-01T00:00:00+01:00 --to-date 2025-03-07T00:00:00+01:00")
        print("  (both ends included; a date without offset is a UTC midnight, so one day later)")
        print("\nCtrl-C stops everything.")
        try:
            while all(p.poll() is None for p in stack.processes.values()):
                time.sleep(1)
            print("An Airflow component exited; stopping.")
        except KeyboardInterrupt:
            print("\nStopping...")
    return 0


if __name__ == "__main__":
    sys.exit(main())
