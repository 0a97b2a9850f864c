"""A real distributed Airflow here: PostgreSQL, Redis, the CeleryExecutor and two Celery workers.

What production runs, in miniature, for tests that must hold across processes and hosts: the
metadata DB is PostgreSQL, the Celery broker is Redis (both Debian's binaries, run by us on free
loopback ports from temporary directories: no system service is touched), and Airflow's
api-server, scheduler and dag-processor run beside two ``airflow celery worker`` processes. Each
worker has its own Celery node name, its own temp dir (``TMPDIR``), its own log-server port and
its own ``hostname`` in ``task_instance`` (through ``[core] hostname_callable``), so a test can
tell which worker ran what, as it would tell two machines apart.

Use::

    with DistributedStack(home, env={"AIRFLOW_CONN_LUCCA_DEFAULT": ...}, pools={"lucca_api": 1})
        as stack:
        stack.wait_for_dags("lucca_realized_trainings_daily")
        backfill = stack.backfill("lucca_realized_trainings_daily", "2025-03-10T00:00:00+01:00",
                                  "2025-03-12T00:00:00+01:00")
        runs = stack.wait_for_backfill(backfill["id"])
        stack.sql("SELECT hostname, count(*) FROM task_instance GROUP BY hostname")

Every wait is bounded; every process is stopped by PID (with the processes it started) in
:meth:`DistributedStack.stop`, also when :meth:`DistributedStack.start` fails halfway, and a
failed start raises with the tail of each component's log. PostgreSQL refuses to run as root: as
root, its server runs as the ``postgres`` system user, from a directory that user owns.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from local_airflow import ROOT, VENV_BIN, airflow, airflow_env, health_problem

#: Environment variable that gives a worker's task processes their ``task_instance.hostname``.
HOSTNAME_VARIABLE = "DISTRIBUTED_STACK_HOSTNAME"
#: Bounded waits, generous for a loaded 2-core machine.
PG_READY_TIMEOUT = 60.0
REDIS_READY_TIMEOUT = 30.0
HEALTH_TIMEOUT = 150.0
STOP_TIMEOUT = 20.0
FINAL_RUN_STATES = frozenset({"success", "failed"})
FAILED_TASK_STATES = ("failed", "up_for_retry", "upstream_failed")


def worker_hostname() -> str:
    """``[core] hostname_callable`` of the workers: the name the stack gave this worker.

    Both workers run on one machine, so the default (the FQDN) would be the same for both and
    ``task_instance.hostname`` could not say which one ran a task.
    """
    return os.environ.get(HOSTNAME_VARIABLE) or socket.getfqdn()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Worker:
    """One Celery worker of the stack."""

    name: str  # "worker1": its log is <home>/worker1.log
    celery_hostname: str  # the Celery node name, "worker1@<machine>"
    hostname: str  # what it writes in task_instance.hostname
    tmpdir: Path  # its TMPDIR
    log_server_port: int  # [logging] worker_log_server_port


class DistributedStack:
    """PostgreSQL + Redis + Airflow (CeleryExecutor) under ``home``, on free loopback ports.

    :param home: AIRFLOW_HOME; the components' logs go there (``<component>.log``).
    :param dags_folder: default: this repository's ``dags/``.
    :param env: extra environment of every Airflow component and of :meth:`cli`, applied last:
        connections (``AIRFLOW_CONN_*``), Variables (``AIRFLOW_VAR_*``), ``LUCCA_OUTPUT_PATH``,
        ``AIRFLOW__SECTION__KEY`` overrides...
    :param pools: pools to create, name -> slots (created through the REST API before the DAGs
        can have run; ``default_pool`` may be resized here too).
    :param workers: how many Celery workers (two unless a test needs otherwise).
    :param concurrency: task slots of each worker.
    :param dags_paused: DAGs start paused (``[core] dags_are_paused_at_creation``): only those
        given to :meth:`unpause` run, no other DAG of the folder adds its scheduled runs.
    :param port: the api-server's port (0: a free one).

    Ports are chosen here, so :meth:`redis_url` and :attr:`url` can go into ``env`` (an Airflow
    connection to the stack's Redis) before :meth:`start`: build the stack, then update
    :attr:`extra_env`, then start it.
    """

    def __init__(
        self,
        home: Path,
        *,
        dags_folder: Path | None = None,
        env: Mapping[str, str] | None = None,
        pools: Mapping[str, int] | None = None,
        workers: int = 2,
        concurrency: int = 2,
        dags_paused: bool = False,
        port: int = 0,
    ) -> None:
        self.home = Path(home)
        self.dags_folder = Path(dags_folder or ROOT / "dags")
        self.extra_env = dict(env or {})
        self.pools = dict(pools or {})
        self.concurrency = concurrency
        self.dags_paused = dags_paused
        self.port = port or free_port()
        self.pg_port = free_port()
        self.redis_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        machine = socket.gethostname()
        self.workers = [
            Worker(
                name=f"worker{n}",
                celery_hostname=f"worker{n}@{machine}",
                hostname=f"worker{n}.{machine}",
                tmpdir=self.home / f"worker{n}" / "tmp",
                log_server_port=free_port(),
            )
            for n in range(1, workers + 1)
        ]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.env: dict[str, str] = {}
        self.pg_dir: Path | None = None
        self._pg_password = secrets.token_hex(16)
        self._token = ""

    # ----------------------------------------------------------------------------- addresses

    @property
    def pg_dsn(self) -> str:
        """libpq/psycopg2 DSN of the metadata database."""
        return (
            f"host=127.0.0.1 port={self.pg_port} dbname=airflow user=airflow "
            f"password={self._pg_password}"
        )

    @property
    def sql_alchemy_conn(self) -> str:
        return f"postgresql+psycopg2://airflow:{self._pg_password}@127.0.0.1:{self.pg_port}/airflow"

    def redis_url(self, db: int = 0) -> str:
        """``redis://`` URL of the stack's Redis; Celery uses db 0, the others are free."""
        return f"redis://127.0.0.1:{self.redis_port}/{db}"

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> DistributedStack:
        """Start everything and wait until the api-server is healthy and every worker answers
        a Celery ping; on any failure stop what started and raise with the logs' tails."""
        self.home.mkdir(parents=True, exist_ok=True)
        if importlib.util.find_spec("asyncpg") is None:
            # Airflow 3 opens an async engine beside the sync one, asyncpg for postgresql://.
            raise RuntimeError(
                "Airflow on PostgreSQL needs the asyncpg driver: it is not installed in this venv"
            )
        try:
            self._start_postgres()
            self._start_redis()
            self.env = self._airflow_env()
            airflow(self.env, "db", "migrate", timeout=300)
            self._spawn_airflow("api-server", ["api-server"], self.env)
            self._spawn_airflow("scheduler", ["scheduler"], self.env)
            self._spawn_airflow("dag-processor", ["dag-processor"], self.env)
            for worker in self.workers:
                self._spawn_worker(worker)
            deadline = time.monotonic() + HEALTH_TIMEOUT
            self._wait_api(deadline)
            self._create_pools()
            self._wait_healthy(deadline)
            self._wait_workers(deadline)
        except BaseException as exc:
            self.stop()
            if isinstance(exc, Exception):
                raise RuntimeError(
                    f"The distributed Airflow stack did not start: {exc}\n{self.log_tails()}"
                ) from exc
            raise
        return self

    def stop(self) -> None:
        """Stop every process by PID, workers first and PostgreSQL last, each with the processes
        it started; SIGKILL after a bounded wait. Removes PostgreSQL's directory (the logs and
        AIRFLOW_HOME stay). Safe to call twice."""
        workers = [worker.name for worker in self.workers]
        # Workers first, while the api-server can still take their tasks' last words; then the
        # other components together.
        self._terminate(workers)
        self._terminate([name for name in self.processes if name not in ("postgres", "redis")])
        self._terminate(["redis"])
        # SIGINT is PostgreSQL's fast shutdown (SIGTERM waits for every client to disconnect).
        self._terminate(["postgres"], sig=signal.SIGINT)
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)
            self.pg_dir = None

    def __enter__(self) -> DistributedStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------------------ accessors

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the REST API (``/api/v2/...``) with a token from the simple auth manager; an HTTP
        error is raised as ``urllib.error.HTTPError`` with the server's answer in its message."""
        if not self._token:
            self._token = self._request("GET", "/auth/token", None)["access_token"]
        try:
            return self._request(method, path, body, token=self._token)
        except urllib.error.HTTPError as exc:
            if exc.code != 401:
                raise
            self._token = self._request("GET", "/auth/token", None)["access_token"]
            return self._request(method, path, body, token=self._token)

    def cli(self, *args: str, timeout: float = 180) -> str:
        """The airflow CLI with the stack's environment; its stdout. Raises with its output when
        it fails, ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        return airflow(self.env, *args, timeout=timeout)

    def connect(self) -> Any:
        """A new psycopg2 connection to the metadata database (autocommit); close it."""
        import psycopg2

        connection = psycopg2.connect(self.pg_dsn, connect_timeout=10)
        connection.autocommit = True
        return connection

    def sql(
        self, query: str, params: Sequence[Any] | Mapping[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Rows of one query on the metadata database (``%s`` placeholders)."""
        connection = self.connect()
        try:
            with connection.cursor() as cursor:
                cursor.execute(query, params)
                return list(cursor.fetchall()) if cursor.description else []
        finally:
            connection.close()

    def log_path(self, component: str) -> Path:
        """Log of ``api-server``, ``scheduler``, ``dag-processor``, ``worker1``..., ``postgres``,
        ``redis``."""
        return self.home / f"{component}.log"

    def log_tails(self, lines: int = 40, components: Iterable[str] | None = None) -> str:
        names = list(components or self._component_names())
        return "\n".join(_tail(self.log_path(name), lines) for name in names)

    # ---------------------------------------------------------------------------------- waits

    def wait_for_dags(self, *dag_ids: str, timeout: float = 120) -> None:
        """Bounded wait until the DAGs are parsed and serialized; fails at once on an import
        error in the dags folder."""
        deadline = time.monotonic() + timeout
        missing = list(dag_ids)
        while True:
            errors = self.api("GET", "/api/v2/importErrors")["import_errors"]
            if errors:
                raise RuntimeError(f"{self.dags_folder} has import errors: {errors}")
            missing = [dag_id for dag_id in dag_ids if not self._dag_exists(dag_id)]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAGs not parsed within {timeout:.0f} s: {missing}")
            time.sleep(1)  # polling, with a deadline

    def backfill(self, dag_id: str, from_date: str, to_date: str, **options: Any) -> dict[str, Any]:
        """Create a backfill through the REST API (``max_active_runs``, ``reprocess_behavior``,
        ``dag_run_conf``... as keyword arguments); its JSON, with its ``id``. Both dates are
        instants, both included: give Paris midnights with their offset."""
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date, **options}
        result: dict[str, Any] = self.api("POST", "/api/v2/backfills", body)
        return result

    def wait_for_backfill(
        self, backfill_id: int, timeout: float = 300, *, fail_fast: bool = True
    ) -> list[dict[str, Any]]:
        """Bounded wait until the scheduler marks the backfill completed (none of its runs queued
        or running); its runs (REST API JSON) by logical date. Raises ``TimeoutError`` with the
        runs' states otherwise.

        :param fail_fast: raise as soon as one of its task instances failed or waits for a retry
            (a retry delay would outlast any test), naming them; ``False`` when a test expects
            failures.
        """
        deadline = time.monotonic() + timeout
        while True:
            backfill = self.api("GET", f"/api/v2/backfills/{backfill_id}")
            if backfill["completed_at"]:
                return self._backfill_runs(backfill)
            if fail_fast:
                failed = self.sql(
                    "SELECT ti.dag_id, ti.run_id, ti.task_id, ti.map_index, ti.state, ti.hostname"
                    " FROM task_instance ti JOIN dag_run dr"
                    " ON dr.dag_id = ti.dag_id AND dr.run_id = ti.run_id"
                    " WHERE dr.backfill_id = %s AND ti.state IN %s ORDER BY ti.run_id",
                    (backfill_id, FAILED_TASK_STATES),
                )
                if failed:
                    raise RuntimeError(
                        f"Backfill {backfill_id}: task instances failed:\n"
                        + "\n".join(
                            f"{run_id} {task_id}[{map_index}] {state} on {host}: "
                            + self.task_errors(dag_id, run_id, task_id, map_index)
                            for dag_id, run_id, task_id, map_index, state, host in failed
                        )
                    )
            if time.monotonic() > deadline:
                states = [
                    (run["dag_run_id"], run["state"]) for run in self._backfill_runs(backfill)
                ]
                raise TimeoutError(
                    f"Backfill {backfill_id} not done within {timeout:.0f} s: {states}"
                )
            time.sleep(2)  # polling, with a deadline

    def task_log(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Path | None:
        """The log file of a task instance's latest attempt (the workers write them under the
        shared AIRFLOW_HOME), if any."""
        folder = self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}" / f"task_id={task_id}"
        if map_index >= 0:
            folder /= f"map_index={map_index}"
        attempts = sorted(folder.glob("attempt=*.log"), key=lambda path: path.stat().st_mtime)
        return attempts[-1] if attempts else None

    def task_errors(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> str:
        """The error events of a task instance's latest attempt, one line each, for a failure
        message."""
        path = self.task_log(dag_id, run_id, task_id, map_index)
        if path is None:
            return "(no log)"
        errors = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("level") in ("error", "critical"):
                details = "; ".join(
                    f"{detail.get('exc_type')}: {detail.get('exc_value')}"
                    for detail in event.get("error_detail") or []
                )
                errors.append(f"{event.get('event')} {details}".strip())
        return " | ".join(errors) or f"(no error event; see {path})"

    def unpause(self, *dag_ids: str) -> None:
        """Let these (parsed) DAGs run: a paused DAG's runs, backfills included, never start."""
        for dag_id in dag_ids:
            self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Trigger a manual run now; its JSON (``dag_run_id``...)."""
        body = {"logical_date": None, "conf": dict(conf or {})}
        result: dict[str, Any] = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        return result

    def wait_for_dag_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        """Bounded wait until a run is ``success`` or ``failed``; its JSON."""
        deadline = time.monotonic() + timeout
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        while True:
            run: dict[str, Any] = self.api("GET", path)
            if run["state"] in FINAL_RUN_STATES:
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} {run_id} still {run['state']} after {timeout:.0f} s")
            time.sleep(2)  # polling, with a deadline

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """A run's task instances (REST API JSON), mapped ones included."""
        path = f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        result: list[dict[str, Any]] = self.api("GET", f"{path}/taskInstances?limit=1000")[
            "task_instances"
        ]
        return result

    # ------------------------------------------------------------------------------ internals

    def _component_names(self) -> list[str]:
        airflow_names = ["api-server", "scheduler", "dag-processor"]
        return ["postgres", "redis", *airflow_names, *(worker.name for worker in self.workers)]

    def _airflow_env(self) -> dict[str, str]:
        from cryptography.fernet import Fernet

        secret = secrets.token_hex(16)
        settings = {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
            "AIRFLOW__CELERY__BROKER_URL": self.redis_url(0),
            "AIRFLOW__CELERY__RESULT_BACKEND": (
                f"db+postgresql+psycopg2://airflow:{self._pg_password}@127.0.0.1:{self.pg_port}/airflow"
            ),
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.concurrency),
            # Every component signs or checks the same tokens, and reads the same secrets.
            "AIRFLOW__API_AUTH__JWT_SECRET": secret,
            "AIRFLOW__API__SECRET_KEY": secret,
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.port),
            "AIRFLOW__API__BASE_URL": self.url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
            "AIRFLOW__CORE__PARALLELISM": str(max(4, self.concurrency * len(self.workers))),
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": str(self.dags_paused),
            # The example daily DAG would otherwise catch up from 2025-01-01 at once: runs here
            # come from backfills and triggers (the env parameter can say otherwise).
            "LUCCA_CATCHUP": "false",
        }
        output = (self.home / "lake" / "realized_trainings").as_uri()
        env = airflow_env(
            self.home,
            self.extra_env.get("LUCCA_OUTPUT_PATH", output),
            self.extra_env.get("AIRFLOW_CONN_LUCCA_DEFAULT", ""),
            **settings,
            **self.extra_env,
        )
        if not env["AIRFLOW_CONN_LUCCA_DEFAULT"]:
            del env["AIRFLOW_CONN_LUCCA_DEFAULT"]
        return env

    def _spawn(
        self,
        name: str,
        command: list[str],
        env: Mapping[str, str],
        *,
        cwd: Path = ROOT,
        user: str | None = None,
    ) -> subprocess.Popen[bytes]:
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(
                command,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,  # its own process group: stopped with its children
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        self.processes[name] = process
        return process

    def _spawn_airflow(self, name: str, args: list[str], env: Mapping[str, str]) -> None:
        self._spawn(name, [str(VENV_BIN / "airflow"), *args], env)

    def _spawn_worker(self, worker: Worker) -> None:
        worker.tmpdir.mkdir(parents=True, exist_ok=True)
        scripts = str(Path(__file__).resolve().parent)
        env = {
            **self.env,
            "TMPDIR": str(worker.tmpdir),
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(worker.log_server_port),
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "distributed_stack.worker_hostname",
            HOSTNAME_VARIABLE: worker.hostname,
            "PYTHONPATH": os.pathsep.join(filter(None, [scripts, self.env.get("PYTHONPATH")])),
        }
        pid_file = str(self.home / worker.name / "worker.pid")
        self._spawn_airflow(
            worker.name,
            [
                *("celery", "worker", "--celery-hostname", worker.celery_hostname),
                *("--concurrency", str(self.concurrency), "--pid", pid_file),
            ],
            env,
        )

    # PostgreSQL ---------------------------------------------------------------------------

    def _start_postgres(self) -> None:
        binaries = _postgres_bin()
        as_root = os.geteuid() == 0
        self.pg_dir = Path(tempfile.mkdtemp(prefix="lucca-pg-", dir=_traversable_tmp()))
        data, sockets = self.pg_dir / "data", self.pg_dir / "socket"
        sockets.mkdir()
        password_file = self.pg_dir / "password"
        password_file.write_text(self._pg_password + "\n")
        user = "postgres" if as_root else None
        if as_root:
            for path in (self.pg_dir, sockets, password_file):
                shutil.chown(path, "postgres", "postgres")
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"}
        # initdb is quick and bounded: run it to completion, its output in postgres.log.
        with open(self.log_path("postgres"), "ab") as log:
            subprocess.run(
                [
                    str(binaries / "initdb"),
                    *("-D", str(data), "-U", "airflow", "--pwfile", str(password_file)),
                    *("--auth-host=scram-sha-256", "--auth-local=trust"),
                    *("--no-locale", "--encoding=UTF8", "--no-sync"),
                ],
                env=env,
                cwd=self.pg_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=120,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        password_file.unlink()
        process = self._spawn(
            "postgres",
            [
                str(binaries / "postgres"),
                *("-D", str(data), "-p", str(self.pg_port), "-k", str(sockets)),
                *("-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"),
                # A throw-away database: durability buys nothing here, and costs seconds.
                *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
            ],
            env,
            cwd=self.pg_dir,
            user=user,
        )
        self._wait_postgres(process)
        import psycopg2

        connection = psycopg2.connect(
            host="127.0.0.1",
            port=self.pg_port,
            dbname="postgres",
            user="airflow",
            password=self._pg_password,
            connect_timeout=10,
        )
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                cursor.execute("CREATE DATABASE airflow")
        finally:
            connection.close()

    def _wait_postgres(self, process: subprocess.Popen[bytes]) -> None:
        import psycopg2

        deadline = time.monotonic() + PG_READY_TIMEOUT
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with code {process.returncode}")
            try:
                psycopg2.connect(
                    host="127.0.0.1",
                    port=self.pg_port,
                    dbname="postgres",
                    user="airflow",
                    password=self._pg_password,
                    connect_timeout=2,
                ).close()
                return
            except psycopg2.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL not ready within {PG_READY_TIMEOUT:.0f} s: {exc}"
                    ) from exc
            time.sleep(0.2)  # polling, with a deadline

    # Redis --------------------------------------------------------------------------------

    def _start_redis(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed: run bash scripts/system_packages.sh")
        directory = self.home / "redis"
        directory.mkdir(parents=True, exist_ok=True)
        process = self._spawn(
            "redis",
            [
                server,
                *("--port", str(self.redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(directory)),
                *("--daemonize", "no", "--databases", "16"),
            ],
            os.environ,
            cwd=directory,
        )
        self._wait_redis(process)

    def _wait_redis(self, process: subprocess.Popen[bytes]) -> None:
        import redis

        deadline = time.monotonic() + REDIS_READY_TIMEOUT
        client = redis.Redis(host="127.0.0.1", port=self.redis_port, socket_timeout=2)
        try:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"Redis exited with code {process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.RedisError as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"Redis not ready within {REDIS_READY_TIMEOUT:.0f} s: {exc}"
                        ) from exc
                time.sleep(0.1)  # polling, with a deadline
        finally:
            client.close()

    # Airflow ------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}")

    def _wait_api(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/monitor/health", timeout=5):
                    return
            except (OSError, ValueError) as exc:
                last = str(exc)
            time.sleep(0.5)  # polling, with a deadline
        raise RuntimeError(f"The api-server did not answer in time: {last}")

    def _create_pools(self) -> None:
        for name, slots in self.pools.items():
            try:
                self.api("POST", "/api/v2/pools", {"name": name, "slots": slots})
            except urllib.error.HTTPError as exc:
                if exc.code != 409:
                    raise
                self.api("PATCH", f"/api/v2/pools/{urllib.parse.quote(name)}", {"slots": slots})

    def _wait_healthy(self, deadline: float) -> None:
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            problem = health_problem(self.url)
            if problem is None:
                return
            last = problem
            time.sleep(1)  # polling, with a deadline
        raise RuntimeError(f"Airflow was not healthy in time: {last}")

    def _wait_workers(self, deadline: float) -> None:
        """Until every worker answers a Celery ping through the broker: then it consumes."""
        from celery import Celery

        app = Celery(broker=self.redis_url(0))
        expected = {worker.celery_hostname for worker in self.workers}
        answered: set[str] = set()
        try:
            while time.monotonic() < deadline:
                self._check_alive()
                replies = app.control.inspect(timeout=1.0).ping() or {}
                answered = set(replies)
                if expected <= answered:
                    return
        finally:
            app.close()
        raise RuntimeError(f"Celery workers not online in time: {sorted(expected - answered)}")

    def _dag_exists(self, dag_id: str) -> bool:
        try:
            self.api("GET", f"/api/v2/dags/{dag_id}")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return False
            raise
        return True

    def _backfill_runs(self, backfill: Mapping[str, Any]) -> list[dict[str, Any]]:
        rows = self.sql(
            "SELECT run_id FROM dag_run WHERE backfill_id = %s ORDER BY logical_date",
            (backfill["id"],),
        )
        dag_id = backfill["dag_id"]
        return [
            self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")
            for (run_id,) in rows
        ]

    def _request(self, method: str, path: str, body: Any, token: str = "") -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {token}"} if token else {}),
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:2000]
            raise urllib.error.HTTPError(
                exc.url, exc.code, f"{exc.reason}: {method} {path}: {detail}", exc.headers, None
            ) from None

    def _terminate(self, names: list[str], sig: signal.Signals = signal.SIGTERM) -> None:
        """Signal each one's process group, wait (bounded), SIGKILL the group if it is still
        there, then kill what is left: the group's members and the descendants seen before the
        signal (psutil checks each PID's start time, so a reused PID is never hit)."""
        targets: list[tuple[subprocess.Popen[bytes], list[Any]]] = []
        for name in names:
            process = self.processes.pop(name, None)
            if process is None:
                continue
            targets.append((process, _descendants(process.pid)))
            if process.poll() is None:
                _signal_group(process.pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process, descendants in targets:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            _kill([*descendants, *_group_members(process.pid, before=time.time())])


def _descendants(pid: int) -> list[Any]:
    import psutil

    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return []


def _group_members(pgid: int, *, before: float) -> list[Any]:
    """Processes still in the group of a leader reaped at ``before``: started before then, so
    not a later group that reuses the number."""
    import psutil

    members = []
    for candidate in psutil.process_iter(["create_time"]):
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(candidate.pid) == pgid and candidate.info["create_time"] <= before:
                members.append(candidate)
    return members


def _kill(processes: Iterable[Any]) -> None:
    import psutil

    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def _postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/<ver>/bin)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    if not candidates:
        raise RuntimeError("PostgreSQL is not installed: run bash scripts/system_packages.sh")
    return candidates[-1].parent


def _traversable_tmp() -> str:
    """A temp dir whose every ancestor others may traverse, so that the ``postgres`` user can
    reach its data directory (pytest's own temp dirs are 0700)."""
    for candidate in (tempfile.gettempdir(), "/tmp"):
        path = Path(candidate).resolve()
        if all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents)):
            return str(path)
    raise RuntimeError("No temp dir that the postgres user can traverse (tried $TMPDIR, /tmp)")


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except FileNotFoundError:
        return f"----- {path}: missing -----"
    return f"----- last {len(text)} lines of {path} -----\n" + "\n".join(text)
