"""Scenario 7: a fleet of Lucca tenants extracted in parallel, each inside its own rate budget.

A tenant's budget caps what one extraction can do (``requests_per_minute`` x 100 records a
page), so the only way to move more records a minute is to read more tenants at once. This
scenario measures whether that holds on this machine, for 1, 2, 4 and 8 tenants:

- every tenant is its own sandbox process (its own seed, its own rate limit, answering 429 above
  it), and every extraction its own OS process, as an Airflow worker's task would be: a pool of
  worker processes (``python -m bench.fleet worker``) that import the provider once, then fork
  one child per extraction, like Airflow 3's task supervisor. The child runs the real extraction
  (``extract_realized_trainings``, a ``LuccaClient`` whose pacer is a ``SharedBudget`` in one
  Redis) and writes jsonl.gz files to a directory of its own on the machine's disk;
- all the round's children are armed (client built, output chosen) before a common start, so
  the wall time is the extraction's, not the interpreters' start-up;
- records/min of the fleet, speed-up and efficiency against one tenant, the 429s and requests the
  sandboxes counted, the peak RSS of each extraction process, and the CPU that the workers, the
  sandboxes and Redis used (what would make the curve bend on a 2-core machine).

Then the point of the shared budget: two processes extracting the same tenant at once (a
backfill's parallel runs), each pacing itself, spend twice the budget and meet 429s once the
tenant's window is full (15 s here: the limit's window scaled down, see CONTENTION_WINDOW);
sharing the budget in Redis they stay inside it.

Writes ``fleet.md`` and ``fleet.png`` next to the other results.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

if __package__ in (None, ""):  # ``python bench/fleet.py``: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PAGE_SIZE, ROOT, SANDBOX_KEY, SYSTEM_TMP, ScenarioResult, fmt_int

#: Numbers of tenants of the curve; the pool has as many workers as the largest.
CURVE = (1, 2, 4, 8)
#: Each curve tenant: 4,000 records (40 pages of 100) at 240 requests/min, so about 10 s of paced
#: requests, then the commit of its daily partitions. The records are those of one month, 129 a
#: day, near a mid-size tenant's density (100,000 a year is 274 a day): the same 4,000 spread
#: over a year would make the commit of 365 near-empty partitions a tenth of the run, where it
#: is well under 1% of a paced history load at Lucca's 50 requests/min.
TENANT_RECORDS = 4_000
TENANT_RPM = 240
TENANT_REQUESTS = -(-TENANT_RECORDS // PAGE_SIZE)
FIRST_DAY, LAST_DAY = date(2025, 1, 1), date(2025, 1, 31)
PERIOD = "January 2025"
SEED_BASE = 700
#: The same-tenant comparison: two processes read the two halves of a month of 6,600 records
#: (about 67 requests in all) from one tenant allowing 60 requests in any window. The window is
#: shortened from 60 s to 15 s (bench.scaled_sandbox: 240/min, 60/min scaled 4x in time), so the
#: comparison takes seconds, not minutes. Paced each on its own at the tenant's rate they send
#: twice it and fill the window in half of it; sharing the budget, they keep to the rate.
CONTENTION_LIMIT = 60
CONTENTION_WINDOW = 15.0
CONTENTION_RPM = round(CONTENTION_LIMIT * 60 / CONTENTION_WINDOW)
CONTENTION_RECORDS = 6_600
CONTENTION_SEED = 900
CONTENTION_SPLIT = date(2025, 1, 16)
#: Targets: speed-up against one tenant. 8 tenants have none: what bounds them on this machine
#: is measured and reported instead.
SPEEDUP_TARGETS = {2: 1.8, 4: 3.2}
#: Seconds to wait for the workers' imports, a round's children to arm, a round to finish.
START_TIMEOUT = 240.0
ARM_TIMEOUT = 120.0
ROUND_TIMEOUT = 300.0
REDIS_READY_TIMEOUT = 30.0
PORT_ATTEMPTS = 5


# --------------------------------------------------------------------------- the worker process


def _send(fd: int, message: dict[str, Any]) -> None:
    """One short JSON line (well under PIPE_BUF, so children writing at once never interleave)."""
    os.write(fd, (json.dumps(message) + "\n").encode())


def worker() -> int:
    """The worker: imports the provider once, then forks one child per extraction of a round.

    Like a Celery worker's pool (or Airflow 3's task supervisor), every extraction is an OS
    process of its own that starts with the provider already imported. The children of a round
    are armed, then block on a pipe that the worker closes on "go": they start together. Each
    writes its figures to a file of its own and says so on stdout. Messages go out on the
    original stdout; fd 1 is pointed at stderr so that nothing a library prints corrupts them.
    """
    proto = os.dup(1)
    os.dup2(2, 1)
    import logging

    logging.getLogger("bench.fleet").setLevel(logging.WARNING)
    commands = sys.stdin
    _send(proto, {"event": "started", "pid": os.getpid()})
    for line in commands:
        message = json.loads(line)
        if message["op"] == "quit":
            return 0
        if message["op"] == "warmup":
            # In this process, so that every child inherits what a first run imports lazily.
            try:
                _extract(message)
                _send(proto, {"event": "warm"})
            except Exception:
                _send(proto, {"event": "error", "error": traceback.format_exc()[-2000:]})
            continue
        _round(message["jobs"], proto, commands)
    return 0


def _round(jobs: list[dict[str, Any]], proto: int, commands: IO[str]) -> None:
    go_read, go_write = os.pipe()
    parent = os.getpid()
    children: list[int] = []
    for index, job in enumerate(jobs):
        pid = os.fork()
        if pid == 0:
            os.close(go_write)
            code = 1
            try:
                _child(index, job, proto, go_read, parent)
                code = 0
            except BaseException:
                Path(job["result"] + ".error").write_text(traceback.format_exc())
                _send(proto, {"event": "error", "index": index})
            finally:
                os._exit(code)
        children.append(pid)
    _send(proto, {"event": "forked", "pids": children})
    os.close(go_read)
    line = commands.readline()
    if json.loads(line or "{}").get("op") != "go":
        for pid in children:  # stopped before the start: the children must not run
            os.kill(pid, signal.SIGKILL)
    os.close(go_write)  # every child's read returns: they start together
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
    _send(proto, {"event": "exited", "codes": codes})


def _child(index: int, job: dict[str, Any], proto: int, go: int, parent: int) -> None:
    run = _prepare(job)
    _send(proto, {"event": "armed", "index": index})
    os.read(go, 1)  # end of file when the worker closes the pipe
    if os.getppid() != parent:
        return  # the worker died: nobody waits for this run
    figures = run()
    Path(job["result"]).write_text(json.dumps(figures))
    _send(proto, {"event": "done", "index": index})


def _schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds waiting for one) of this process, from the scheduler."""
    try:
        with open("/proc/self/schedstat") as stat:
            on_cpu, waiting = stat.read().split()[:2]
        return int(on_cpu) / 1e9, int(waiting) / 1e9
    except (OSError, ValueError):
        return time.process_time(), 0.0


def _extract(job: dict[str, Any]) -> dict[str, Any]:
    return _prepare(job)()


def _prepare(job: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    """Build the client (its pacer shared in Redis or this process's) and the output; return
    the run: the real extraction path, and what it cost."""
    import logging

    import redis
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_lucca.client import LuccaClient
    from airflow_provider_lucca.client.budget import SharedBudget
    from airflow_provider_lucca.client.config import ClientConfig
    from airflow_provider_lucca.extraction.realized_trainings import (
        ExtractionRequest,
        extract_realized_trainings,
    )
    from airflow_provider_lucca.extraction.window import DateWindow
    from bench.memory_child import peak_rss_bytes

    log = logging.getLogger("bench.fleet")
    config = ClientConfig(
        base_url=job["url"],
        api_key=SANDBOX_KEY,
        requests_per_minute=job["rpm"],
        page_size=PAGE_SIZE,
    )
    pacer = None
    if job["shared"]:
        store = redis.Redis(
            host="127.0.0.1", port=job["redis_port"], socket_timeout=10, socket_connect_timeout=10
        )
        store.ping()
        pacer = SharedBudget(store, config.base_url, config.requests_per_minute)
    client = LuccaClient(config, pacer=pacer, logger=log)
    answers: list[tuple[float, int]] = []
    at_last_answer = [_schedstat()]

    def answered(response: Any, *args: Any, **kwargs: Any) -> None:
        answers.append((round(time.time(), 3), int(response.status_code)))
        at_last_answer[0] = _schedstat()

    client.session.hooks["response"].append(answered)
    window = DateWindow(date.fromisoformat(job["start"]), date.fromisoformat(job["end"]))
    output = ObjectStoragePath(Path(job["output"]).as_uri())

    def run() -> dict[str, Any]:
        cpu = time.process_time()
        started = time.time()
        summary = extract_realized_trainings(
            client, ExtractionRequest(window=window), output, log=log, run_id=job["tenant"]
        )
        finished = time.time()
        cpu = time.process_time() - cpu
        on_cpu, waiting = _schedstat()
        client.close()
        last_cpu, last_wait = at_last_answer[0]
        return {
            "tenant": job["tenant"],
            "started": started,
            "finished": finished,
            "cpu": cpu,
            "commit_cpu": on_cpu - last_cpu,
            "commit_cpu_wait": waiting - last_wait,
            "peak_rss_bytes": peak_rss_bytes(),
            "records": summary["records"],
            "requests": summary["requests"],
            "partitions": {day: n for day, n in summary["partitions"].items() if n},
            "statuses": {str(k): v for k, v in client.stats.statuses.items()},
            "pacing_wait": client.stats.pacing_wait_seconds,
            "retry_wait": client.stats.retry_wait_seconds,
            "answers": answers,
        }

    return run


# --------------------------------------------------------------------------- the bench side


class Worker:
    """The worker process seen from the benchmark: JSON lines in and out, stopped by PID."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.fleet", "worker"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        #: PIDs of the extraction children of the round in progress.
        self.children: list[int] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self._messages.put(json.loads(line))
            except ValueError:
                continue
        self._messages.put(None)

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def receive(self, deadline: float) -> dict[str, Any]:
        """The next message; the worker's exit, an error message or the deadline raises."""
        try:
            message = self._messages.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            raise RuntimeError(f"the worker did not answer in time; see {self.log_path}") from None
        if message is None:
            raise RuntimeError(f"the worker exited; see {self.log_path}:\n{self._tail()}")
        if "error" in message:
            raise RuntimeError(f"the worker failed:\n{message['error']}")
        return message

    def expect(self, event: str, deadline: float) -> dict[str, Any]:
        message = self.receive(deadline)
        if message.get("event") != event:
            raise RuntimeError(f"expected {event!r} from the worker, got {message}")
        return message

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Quit (a round not started yet kills its children), else kill by PID: the worker, and
        the children of a round still running."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.send({"op": "quit"})
                assert self.process.stdin is not None
                self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._log.close()


@dataclass
class Tenant:
    """A sandbox process: one Lucca account with its data, seed and rate limit."""

    name: str
    seed: int
    records: int
    rpm: int
    process: Any = None
    #: A rate window shorter than 60 s (bench.scaled_sandbox) and the limit within it; None: 60 s
    #: and ``rpm``.
    window: float | None = None
    limit: int | None = None

    def start(self, log_dir: Path) -> None:
        from bench.scaled_sandbox import ScaledSandboxProcess
        from lucca_sandbox.process import SandboxProcess

        args = ["--records", str(self.records), "--seed", str(self.seed)]
        args += ["--start", FIRST_DAY.isoformat(), "--end", LAST_DAY.isoformat()]
        args += ["--requests-per-minute", str(self.limit or self.rpm)]
        if self.window is not None:
            self.process = ScaledSandboxProcess(args, self.window)
        else:
            self.process = SandboxProcess(args, log_path=str(log_dir / f"sandbox-{self.name}.log"))
        self.process.start()

    @property
    def url(self) -> str:
        return str(self.process.url)

    @property
    def pid(self) -> int:
        return int(self.process.process.pid)

    def expected(self, start: date, end: date) -> dict[str, int]:
        """Records per day of ``[start, end)``, from the sandbox's own generator and seed."""
        from lucca_sandbox.data import generate_records

        counts: dict[str, int] = {}
        for record in generate_records(self.seed, self.records, FIRST_DAY, LAST_DAY):
            day = record["sessionEndsOn"]
            if start.isoformat() <= day < end.isoformat():
                counts[day] = counts.get(day, 0) + 1
        return counts

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class RedisServer:
    """``redis-server`` on a free loopback port, in a temporary directory, stopped by PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise RuntimeError("redis-server is not installed: run bash scripts/system_packages.sh")
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(PORT_ATTEMPTS):
            self.port = _free_port()
            command = [server, "--port", str(self.port), "--bind", "127.0.0.1"]
            command += ["--save", "", "--appendonly", "no", "--dir", str(self.directory)]
            with (self.directory / "redis.log").open("ab") as log:
                self.process = subprocess.Popen(
                    command, cwd=self.directory, stdout=log, stderr=subprocess.STDOUT
                )
            if self._ready():
                return
            self.stop()
        raise RuntimeError(f"redis-server did not start ({PORT_ATTEMPTS} ports tried)")

    def _ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + REDIS_READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # the port was taken meanwhile
            try:
                self.client().ping()
                return True
            except Exception:
                time.sleep(0.05)  # polling, with a deadline
        raise RuntimeError(f"redis-server not ready within {REDIS_READY_TIMEOUT:.0f} s")

    def client(self) -> Any:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def flush(self) -> None:
        self.client().flushall()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Job:
    """One extraction: a tenant, a window, a pacer, an output directory, a result file."""

    tenant: Tenant
    start: date
    end: date
    shared: bool
    output: Path
    result: Path

    def message(self, redis_port: int) -> dict[str, Any]:
        return {
            "tenant": self.tenant.name,
            "url": self.tenant.url,
            "rpm": self.tenant.rpm,
            "shared": self.shared,
            "redis_port": redis_port,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "output": str(self.output),
            "result": str(self.result),
        }


@dataclass
class Round:
    """What one round of simultaneous extractions did, from the children and the sandboxes."""

    jobs: list[Job]
    done: list[dict[str, Any]]
    go: float
    stats: dict[str, dict[str, Any]]
    cpu_workers: float
    cpu_sandboxes: float
    cpu_redis: float
    machine_busy: float
    exact: bool
    mismatches: list[str] = field(default_factory=list)

    @property
    def wall(self) -> float:
        return float(max(child["finished"] for child in self.done)) - self.go

    @property
    def records(self) -> int:
        return sum(int(child["records"]) for child in self.done)

    @property
    def records_per_minute(self) -> float:
        return self.records / self.wall * 60

    @property
    def requests(self) -> int:
        return sum(int(stats["requests"]) for stats in self.stats.values())

    def status(self, code: int, tenant: str | None = None) -> int:
        chosen = [self.stats[tenant]] if tenant else list(self.stats.values())
        return sum(int(stats["by_status"].get(str(code), 0)) for stats in chosen)

    @property
    def peak_rss_bytes(self) -> int:
        return max(int(child["peak_rss_bytes"]) for child in self.done)

    def commit_seconds(self) -> list[float]:
        """Per child, the seconds after its last answer from Lucca: spool read, files, commit."""
        return [child["finished"] - max(t for t, _ in child["answers"]) for child in self.done]

    def commit_breakdown(self) -> tuple[float, float, float, float]:
        """Mean seconds of the commit phase (after the last answer) per child: in all, on a CPU,
        waiting for a CPU (runnable), and the rest: blocked, on the disk for most of it."""
        count = len(self.done)
        wall = sum(self.commit_seconds()) / count
        cpu = sum(float(child["commit_cpu"]) for child in self.done) / count
        runnable = sum(float(child["commit_cpu_wait"]) for child in self.done) / count
        return wall, cpu, runnable, max(wall - cpu - runnable, 0.0)

    def fetch_seconds(self) -> float:
        """Mean seconds from a child's start to its last answer: the paced requests."""
        spans = [max(t for t, _ in child["answers"]) - child["started"] for child in self.done]
        return float(sum(spans)) / len(spans)

    def cores_used(self) -> tuple[float, float]:
        """Cores used over the round by the fleet (extraction processes, sandboxes, Redis) and
        by everything else on the machine (other users' jobs)."""
        cores = os.cpu_count() or 1
        fleet = (self.cpu_workers + self.cpu_sandboxes + self.cpu_redis) / self.wall
        return fleet, max(self.machine_busy * cores - fleet, 0.0)

    def busiest(self, tenant: str, seconds: float, *, admitted_only: bool = False) -> int:
        """Most requests to ``tenant`` within any ``seconds`` (by the clients' clocks): all that
        were sent, or only those admitted (answered 200)."""
        times = sorted(
            t
            for child in self.done
            if child["tenant"] == tenant
            for t, status in child["answers"]
            if status == 200 or not admitted_only
        )
        best, first = 0, 0
        for last, moment in enumerate(times):
            while moment - times[first] >= seconds:
                first += 1
            best = max(best, last - first + 1)
        return best


def _cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, every process of every user."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def run_round(
    worker_: Worker, jobs: Sequence[Job], redis: RedisServer, tenants: list[Tenant]
) -> Round:
    """Arm one child per job, start them together, wait for all; counters before and after.

    Every tenant's counters and rate window are reset and the budgets in Redis emptied first,
    so a round never inherits the previous one's requests.
    """
    redis.flush()
    involved = {job.tenant.name: job.tenant for job in jobs}
    for tenant in involved.values():
        tenant.process.admin("reset-stats", {})
    for job in jobs:
        job.result.parent.mkdir(parents=True, exist_ok=True)
    worker_.send({"op": "round", "jobs": [job.message(redis.port) for job in jobs]})
    _await_children(worker_, jobs, "armed", time.monotonic() + ARM_TIMEOUT)
    sandbox_pids = [tenant.pid for tenant in tenants]
    assert redis.process is not None
    before = (
        sum(_cpu_seconds(pid) for pid in sandbox_pids),
        _cpu_seconds(redis.process.pid),
        _machine_jiffies(),
    )
    go = time.time()
    worker_.send({"op": "go"})
    deadline = time.monotonic() + ROUND_TIMEOUT
    _await_children(worker_, jobs, "done", deadline)
    after = (
        sum(_cpu_seconds(pid) for pid in sandbox_pids),
        _cpu_seconds(redis.process.pid),
        _machine_jiffies(),
    )
    codes = worker_.expect("exited", deadline)["codes"]
    worker_.children = []
    if any(codes):
        raise RuntimeError(f"extraction children exited with {codes}")
    done = [json.loads(job.result.read_text()) for job in jobs]
    stats = {name: tenant.process.stats() for name, tenant in involved.items()}
    busy = (after[2][0] - before[2][0]) / max(after[2][1] - before[2][1], 1)
    mismatches = []
    for job, child in zip(jobs, done, strict=True):
        expected = job.tenant.expected(job.start, job.end)
        if child["partitions"] != expected or child["records"] != sum(expected.values()):
            mismatches.append(
                f"{job.tenant.name} [{job.start}, {job.end}): {child['records']} records "
                f"vs {sum(expected.values())} in the sandbox"
            )
    return Round(
        jobs=list(jobs),
        done=done,
        go=go,
        stats=stats,
        cpu_workers=sum(float(child["cpu"]) for child in done),
        cpu_sandboxes=after[0] - before[0],
        cpu_redis=after[1] - before[1],
        machine_busy=busy,
        exact=not mismatches,
        mismatches=mismatches,
    )


def _await_children(worker_: Worker, jobs: Sequence[Job], event: str, deadline: float) -> None:
    """Until every child of the round has said ``event``; the worker's list of their PIDs
    (sent once they are all forked, maybe after the first children armed) is kept for stop()."""
    waiting = set(range(len(jobs)))
    while waiting:
        message = worker_.receive(deadline)
        kind = message.get("event")
        if kind == "forked":
            worker_.children = list(message["pids"])
        elif kind == "error":
            error = jobs[message["index"]].result.with_suffix(".json.error")
            raise RuntimeError(
                f"extraction {message['index']} failed:\n{error.read_text()[-3000:]}"
            )
        elif kind == event:
            waiting.discard(int(message["index"]))
        else:
            raise RuntimeError(f"expected {event!r} from an extraction, got {message}")


@contextlib.contextmanager
def fleet_processes(base: Path) -> Iterator[tuple[Worker, list[Tenant], list[Tenant], RedisServer]]:
    """Redis, the curve's tenants, the two same-tenant sandboxes and the worker, all stopped by
    PID on exit whatever happened."""
    logs = base / "logs"
    logs.mkdir(parents=True)
    spool = base / "spool"  # the worker's TMPDIR: the extraction's local spool, on disk too
    spool.mkdir()
    redis = RedisServer(base / "redis")
    tenants = [
        Tenant(f"t{index}", SEED_BASE + index, TENANT_RECORDS, TENANT_RPM)
        for index in range(1, max(CURVE) + 1)
    ]
    same = [
        Tenant(
            f"same-{kind}",
            CONTENTION_SEED,
            CONTENTION_RECORDS,
            CONTENTION_RPM,
            window=CONTENTION_WINDOW,
            limit=CONTENTION_LIMIT,
        )
        for kind in ("own", "shared")
    ]
    worker_: Worker | None = None
    try:
        redis.start()
        env = {**os.environ, "TMPDIR": str(spool), "PYTHONUNBUFFERED": "1"}
        worker_ = Worker(env, logs / "worker.log")
        for tenant in [*tenants, *same]:
            tenant.start(logs)
        worker_.expect("started", time.monotonic() + START_TIMEOUT)
        yield worker_, tenants, same, redis
    finally:
        if worker_ is not None:
            worker_.stop()
        for tenant in [*tenants, *same]:
            tenant.stop()
        redis.stop()


def _warm_up(worker_: Worker, tenant: Tenant, base: Path) -> None:
    """One small unpaced extraction in the worker itself (not a child): its imports and the
    first-use setup of a run are then inherited by every child, as in a worker that has run
    tasks before."""
    job = Job(tenant, FIRST_DAY, FIRST_DAY + timedelta(days=1), False, base / "warmup", base / "w")
    worker_.send({**job.message(0), "op": "warmup", "rpm": 0})
    worker_.expect("warm", time.monotonic() + START_TIMEOUT)


# --------------------------------------------------------------------------- the scenario


def fleet(results_dir: Path | None = None) -> ScenarioResult:
    """The curve for 1, 2, 4 and 8 tenants, then one tenant read by two processes with and
    without the shared budget. Writes fleet.md and fleet.png in ``results_dir``."""
    began = time.perf_counter()
    result = ScenarioResult("7. Fleet (tenants in parallel)")
    base = Path(tempfile.mkdtemp(prefix="lucca-bench-fleet-", dir=SYSTEM_TMP))
    end = LAST_DAY + timedelta(days=1)
    try:
        with fleet_processes(base) as (worker_, tenants, same, redis):
            _warm_up(worker_, tenants[0], base)
            print(
                f"    Redis, {len(tenants) + len(same)} sandboxes and the worker ready in "
                f"{time.perf_counter() - began:.0f} s",
                flush=True,
            )
            every = [*tenants, *same]
            rounds: dict[int, Round] = {}
            for count in CURVE:
                jobs = [
                    Job(
                        tenant,
                        FIRST_DAY,
                        end,
                        True,
                        base / f"lake-{count}" / f"tenant={tenant.name}",
                        base / f"results-{count}" / f"{tenant.name}.json",
                    )
                    for tenant in tenants[:count]
                ]
                rounds[count] = run_round(worker_, jobs, redis, every)
                commit = rounds[count].commit_breakdown()
                print(
                    f"    {count} tenant(s): {rounds[count].records_per_minute:,.0f} records/min"
                    f" in {rounds[count].wall:.1f} s; commit {commit[0]:.1f} s a tenant (CPU "
                    f"{commit[1]:.1f}, waiting for a CPU {commit[2]:.1f}, blocked "
                    f"{commit[3]:.1f}); machine {rounds[count].machine_busy:.0%} busy",
                    flush=True,
                )
            halves = ((FIRST_DAY, CONTENTION_SPLIT), (CONTENTION_SPLIT, end))
            contention_jobs = [
                Job(
                    tenant,
                    start,
                    stop,
                    tenant.name == "same-shared",
                    base / "same" / f"{tenant.name}-{half}",
                    base / "results-same" / f"{tenant.name}-{half}.json",
                )
                for tenant in same
                for half, (start, stop) in zip("ab", halves, strict=True)
            ]
            contention = run_round(worker_, contention_jobs, redis, every)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    _curve_rows(result, rounds)
    _contention_rows(result, contention)
    result.data = _data(rounds, contention)
    result.seconds = time.perf_counter() - began
    if results_dir is not None:
        write_results(result, results_dir)
    return result


def _per_tenant_budget() -> float:
    """Records a minute one curve tenant's budget allows: its requests a minute, full pages."""
    return TENANT_RPM * PAGE_SIZE


def _curve_rows(result: ScenarioResult, rounds: dict[int, Round]) -> None:
    one = rounds[CURVE[0]]
    for count, run in rounds.items():
        speedup = run.records_per_minute / one.records_per_minute
        limited = run.status(429)
        share = run.records_per_minute / count / _per_tenant_budget()
        value = (
            f"{fmt_int(run.records_per_minute)} records/min ({fmt_int(run.records)} records in "
            f"{run.wall:.1f} s, {fmt_int(run.requests)} requests, {limited} answered 429; "
            f"{share:.0%} of the tenants' budgets); a tenant: requests "
            f"{run.fetch_seconds():.1f} s, commit {run.commit_breakdown()[0]:.1f} s; peak RSS "
            f"{run.peak_rss_bytes / 1024**2:.0f} MB per extraction process"
        )
        if count == CURVE[0]:
            result.row(
                f"1 tenant ({fmt_int(TENANT_RECORDS)} records, {PERIOD}, {TENANT_RPM} "
                "requests/min, budget shared in Redis)",
                value,
                "records exact, no 429",
                run.exact and limited == 0,
            )
            continue
        target = SPEEDUP_TARGETS.get(count)
        result.row(
            f"{count} tenants in parallel: speed-up vs 1 tenant",
            f"{speedup:.2f}x, efficiency {speedup / count:.2f}; {value}",
            f">= {target}x, records exact, no 429" if target else "records exact, no 429",
            (target is None or speedup >= target) and run.exact and limited == 0,
        )
    result.row(
        f"what bounds {CURVE[-1]} tenants on this machine ({os.cpu_count()} CPUs)",
        _bound(rounds),
        "measured",
        None,
    )
    for run in rounds.values():
        for line in run.mismatches:
            result.row("records not exact", line, "", False)


def _bound(rounds: dict[int, Round]) -> str:
    """Where the largest fleet lost time against one tenant, from the measurements: the paced
    requests (the budgets), or the commit, split into CPU, waiting for a CPU, and blocked."""
    cores = os.cpu_count() or 1
    one, largest = rounds[CURVE[0]], rounds[CURVE[-1]]
    count = CURVE[-1]
    from airflow_provider_lucca.client.pacing import interval_of

    ideal = (TENANT_REQUESTS - 1) * interval_of(TENANT_RPM)
    commit_1, commit_n = one.commit_breakdown(), largest.commit_breakdown()
    fleet_cores, other_cores = largest.cores_used()
    speedup = largest.records_per_minute / one.records_per_minute
    losses = {
        "the paced requests": largest.fetch_seconds() - one.fetch_seconds(),
        "the commit's CPU": commit_n[1] - commit_1[1],
        "the commit waiting for a CPU": commit_n[2] - commit_1[2],
        "the commit blocked (disk)": commit_n[3] - commit_1[3],
    }
    worst = max(losses, key=lambda name: losses[name])
    if speedup / count >= 0.9:
        verdict = f"{count} tenants are still bound by their budgets, not by this machine"
    elif worst == "the paced requests":
        verdict = "the requests fell behind their budgets' slots"
    else:
        verdict = (
            f"the loss is mostly {worst} ({losses[worst]:+.1f} s a tenant): the {count} commits "
            "coincide (the tenants start together with the same amount of data), on a machine "
            f"whose other jobs took {other_cores:.2f} of its {cores} cores"
        )
    per_record = one.cpu_workers / one.records
    ceiling = cores * 60 / per_record / _per_tenant_budget()
    return (
        f"{verdict}. A tenant's paced requests took {largest.fetch_seconds():.1f} s at {count} "
        f"tenants, {one.fetch_seconds():.1f} s alone (slots alone: {ideal:.1f} s); its commit "
        f"{commit_n[0]:.1f} s vs {commit_1[0]:.1f} s: on a CPU {commit_n[1]:.1f} s, waiting for "
        f"one {commit_n[2]:.1f} s, blocked {commit_n[3]:.1f} s. Over the round the fleet "
        f"(extraction processes, sandboxes, Redis) used {fleet_cores:.2f} of {cores} cores and "
        f"the other jobs of this shared machine {other_cores:.2f} (machine "
        f"{largest.machine_busy:.0%} busy). Projection, not measured: at 1 tenant's "
        f"{per_record * 1e6:.0f} us of extraction CPU per record, {cores} cores would serve "
        f"~{ceiling:.0f} tenants at {TENANT_RPM} requests/min, ~{ceiling * TENANT_RPM / 50:.0f} "
        "at Lucca's 50"
    )


def _contention_rows(result: ScenarioResult, run: Round) -> None:
    for name, label in (
        ("same-own", "each process pacing itself (no shared budget)"),
        ("same-shared", "sharing the budget in Redis"),
    ):
        children = [child for child in run.done if child["tenant"] == name]
        limited = run.status(429, name)
        admitted = run.busiest(name, CONTENTION_WINDOW, admitted_only=True)
        burst = run.busiest(name, CONTENTION_WINDOW / 2)
        wall = max(child["finished"] for child in children) - run.go
        records = sum(int(child["records"]) for child in children)
        exact = not any(line.startswith(f"{name} ") for line in run.mismatches)
        value = (
            f"{limited} answered 429 of {run.stats[name]['requests']} requests; sent at up to "
            f"{burst * 2} per {CONTENTION_WINDOW:g} s (most in any {CONTENTION_WINDOW / 2:g} s: "
            f"{burst}); at most {admitted} admitted within {CONTENTION_WINDOW:g} s (limit "
            f"{CONTENTION_LIMIT}); {fmt_int(records)} records in {wall:.1f} s"
            f"{'' if exact else ' (records NOT exact)'}"
        )
        figure = (
            f"1 tenant ({CONTENTION_LIMIT} requests in any {CONTENTION_WINDOW:g} s: "
            f"{CONTENTION_LIMIT}/min scaled {60 / CONTENTION_WINDOW:g}x in time), 2 processes at "
            "once (the two halves of "
            f"{PERIOD}, {fmt_int(CONTENTION_RECORDS)} records): {label}"
        )
        if name == "same-shared":
            result.row(
                figure,
                value,
                f"no 429, <= {CONTENTION_LIMIT} sent within any {CONTENTION_WINDOW:g} s, records "
                "exact",
                limited == 0 and run.busiest(name, CONTENTION_WINDOW) <= CONTENTION_LIMIT and exact,
            )
        else:
            result.row(figure, value, "(what it prevents: 429s, twice the rate)", None)


def _data(rounds: dict[int, Round], contention: Round) -> dict[str, Any]:
    one = rounds[CURVE[0]]
    curve = []
    for count, run in rounds.items():
        speedup = run.records_per_minute / one.records_per_minute
        curve.append(
            {
                "tenants": count,
                "records": run.records,
                "wall_seconds": round(run.wall, 2),
                "records_per_minute": round(run.records_per_minute),
                "speedup": round(speedup, 3),
                "efficiency": round(speedup / count, 3),
                "requests": run.requests,
                "answers_429": run.status(429),
                "budget_share_per_tenant": round(
                    run.records_per_minute / count / _per_tenant_budget(), 3
                ),
                "requests_seconds": round(run.fetch_seconds(), 2),
                "commit": dict(
                    zip(
                        ("seconds", "cpu", "waiting_for_cpu", "blocked"),
                        (round(value, 2) for value in run.commit_breakdown()),
                        strict=True,
                    )
                ),
                "cores_fleet": round(run.cores_used()[0], 3),
                "cores_other_jobs": round(run.cores_used()[1], 3),
                "peak_rss_mb": [round(c["peak_rss_bytes"] / 1024**2, 1) for c in run.done],
                "cpu_seconds": {
                    "extraction_processes": round(run.cpu_workers, 2),
                    "sandboxes": round(run.cpu_sandboxes, 2),
                    "redis": round(run.cpu_redis, 2),
                },
                "machine_busy": round(run.machine_busy, 3),
                "exact": run.exact,
            }
        )
    same: dict[str, Any] = {
        "limit": CONTENTION_LIMIT,
        "window_seconds": CONTENTION_WINDOW,
        "rpm": CONTENTION_RPM,
    }
    for name in ("same-own", "same-shared"):
        answers = sorted(
            (round(t - contention.go, 2), status)
            for child in contention.done
            if child["tenant"] == name
            for t, status in child["answers"]
        )
        same[name] = {
            "answers_429": contention.status(429, name),
            "requests": contention.stats[name]["requests"],
            "most_sent_in_window": contention.busiest(name, CONTENTION_WINDOW),
            "most_admitted_in_window": contention.busiest(
                name, CONTENTION_WINDOW, admitted_only=True
            ),
            "wall_seconds": round(
                max(c["finished"] for c in contention.done if c["tenant"] == name) - contention.go,
                2,
            ),
            "answers": answers,
        }
    return {
        "tenant_records": TENANT_RECORDS,
        "tenant_rpm": TENANT_RPM,
        "cpus": os.cpu_count(),
        "curve": curve,
        "same_tenant": same,
    }


# --------------------------------------------------------------------------- fleet.md, fleet.png


def curve_table(data: dict[str, Any]) -> str:
    lines = [
        "| Tenants | Records | Wall (s) | Records/min | Speed-up vs 1 | Efficiency | 429s "
        "| A tenant's requests (s) | A tenant's commit (s): CPU / waiting for a CPU / blocked "
        "| Cores: fleet / other jobs | Peak RSS per process (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for point in data["curve"]:
        commit = point["commit"]
        lines.append(
            f"| {point['tenants']} | {point['records']:,} | {point['wall_seconds']:.1f} "
            f"| {point['records_per_minute']:,} | {point['speedup']:.2f}x "
            f"| {point['efficiency']:.2f} | {point['answers_429']} "
            f"| {point['requests_seconds']:.1f} | {commit['seconds']:.1f}: {commit['cpu']:.1f} / "
            f"{commit['waiting_for_cpu']:.1f} / {commit['blocked']:.1f} "
            f"| {point['cores_fleet']:.2f} / {point['cores_other_jobs']:.2f} "
            f"| {max(point['peak_rss_mb']):.0f} |"
        )
    return "\n".join(lines)


NOTES = [
    "Each tenant is a `lucca-sandbox` process with its own seed and a rate limit over a sliding "
    "60 s window (429 with Retry-After above it). Each extraction is a process forked from one "
    "worker process that imported the provider and ran one small extraction beforehand (as a "
    "Celery worker's pool and Airflow 3's task supervisor fork theirs), running "
    "`extract_realized_trainings` with a `LuccaClient` whose "
    "pacer is a `SharedBudget` in one `redis-server` (a Lua slot script on Redis's clock), "
    "writing jsonl.gz daily partitions through `ObjectStoragePath(file://...)` to a directory "
    "of its own on the machine's disk (its spool too, TMPDIR on disk), not the RAM disk of the "
    "other scenarios.",
    "The children of a round are armed (client, budget, output) and then started together: wall "
    "time runs from the start to the last child's commit. Records/min = all records / wall. "
    "Speed-up = records/min / records/min of 1 tenant in the same run; efficiency = speed-up / "
    "tenants. 'Records exact' = every tenant's partitions hold its sandbox generator's count on "
    "every day. 429s and requests are the sandboxes' own counters.",
    "A tenant's 'requests' = its start to its last answer (paced: 40 slots 0.2525 s apart take "
    "9.8 s); 'commit' = its last answer to its end (spool read, files, manifests), split by "
    "the scheduler's own counters of its main thread (/proc/self/schedstat) into time on a "
    "CPU, time runnable but waiting for a CPU, and the rest (blocked: the disk, the dataset "
    "lock). Cores: CPU seconds over the wall time of the fleet (extraction processes, "
    "sandboxes, Redis; the sandboxes stand for Lucca's servers, whose CPU is not the "
    "workers' in production) and of everything else on this shared machine (/proc/stat). "
    "Peak RSS is each extraction process's VmHWM, the pages shared with its worker counted.",
    "Same tenant: two processes extract the two halves of the month from one tenant at once, once "
    "each pacing itself at the tenant's rate (RequestPacer, what every process did before the "
    "shared budget) and once through the shared budget; both pairs run at the same time on two "
    "identical sandboxes, whose rate window is 15 s instead of 60 (60 requests in any 15 s, "
    "bench.scaled_sandbox: 60/min scaled 4x in time; the clients pace at 240/min). 'Admitted "
    "within 15 s' counts 200 answers by the clients' clocks.",
]


def write_results(result: ScenarioResult, directory: Path) -> None:
    """``fleet.md`` (the rows, the curve, notes) and ``fleet.png`` (the curve, the same-tenant
    request streams) in ``directory``."""
    from bench import report

    directory.mkdir(parents=True, exist_ok=True)
    plot_path = directory / "fleet.png"
    plot(result.data, plot_path)
    info = report.machine()
    text = "\n".join(
        [
            "# Benchmark scenario 7: a fleet of tenants (`make bench`, `bench/fleet.py`)",
            "",
            f"- Date: {report.now_iso()}",
            f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_gb']} GB RAM, "
            f"Python {info['python']}; load average at the end {info['load_average_at_end']} "
            "(shared machine)",
            f"- Commit: {report.git_commit()}",
            f"- Scenario runtime: {result.seconds:.0f} s",
            "- Command: `.venv/bin/python bench/run.py --only 7`",
            "",
            report.markdown_table([result]),
            "",
            f"Curve ({TENANT_RECORDS:,} records a tenant over {PERIOD}, {TENANT_RPM} requests/min "
            f"a tenant, pages of {PAGE_SIZE}: at most {_per_tenant_budget():,.0f} records/min a "
            "tenant):",
            "",
            curve_table(result.data),
            "",
            "Notes:",
            "",
            *(f"- {note}" for note in NOTES),
            "",
            f"Plot: `{plot_path.name}`.",
            "",
        ]
    )
    (directory / "fleet.md").write_text(text)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import StrMethodFormatter

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    curve = data["curve"]
    counts = [point["tenants"] for point in curve]
    measured = [point["records_per_minute"] for point in curve]
    one = measured[0] / counts[0]
    left.plot(counts, measured, "o-", label="measured (shared budget in Redis)")
    for count, value, point in zip(counts, measured, curve, strict=True):
        left.annotate(
            f"{value:,.0f}\n({point['efficiency']:.2f})",
            (count, value),
            textcoords="offset points",
            xytext=(8, -22),
            ha="left",
            fontsize=8,
        )
    left.plot(counts, [one * count for count in counts], ":", color="grey", label="linear (N x 1)")
    budget = data["tenant_rpm"] * PAGE_SIZE
    left.plot(
        counts,
        [budget * count for count in counts],
        "--",
        color="darkred",
        linewidth=0.8,
        label=f"budgets: N x {budget:,.0f}",
    )
    left.set_xticks(counts)
    left.set_xlim(0.5, max(counts) * 1.15)
    left.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    left.set_xlabel("tenants extracted in parallel (one process each)")
    left.set_ylabel("records/min, whole fleet (efficiency)")
    left.set_title(f"Fleet: {data['tenant_rpm']} requests/min a tenant, {data['cpus']} CPUs")
    left.set_ylim(bottom=0)
    left.legend(loc="upper left")
    left.grid(alpha=0.3)

    same = data["same_tenant"]
    limit = same["rpm"]
    for name, label, style in (
        ("same-own", "each process pacing itself", "--"),
        ("same-shared", "shared budget (Redis)", "-"),
    ):
        answers = same[name]["answers"]
        admitted = [t for t, status in answers if status == 200]
        line = right.plot(
            admitted, range(1, len(admitted) + 1), style, label=f"{label}: 200 answers"
        )
        refused = [t for t, status in answers if status == 429]
        if refused:
            heights = [sum(1 for t in admitted if t <= moment) for moment in refused]
            right.plot(
                refused,
                heights,
                "x",
                color=line[0].get_color(),
                markersize=9,
                label=f"{label}: 429 answers ({len(refused)})",
            )
    end = max(t for name in ("same-own", "same-shared") for t, _ in same[name]["answers"])
    right.plot(
        [0, end],
        [0, end * limit / 60],
        color="grey",
        linewidth=0.8,
        label=f"limit {same['limit']} per {same['window_seconds']:g} s",
    )
    right.set_xlabel("seconds since the start")
    right.set_ylabel("cumulative admitted requests, both processes")
    right.set_title("One tenant, two processes at once")
    right.legend(loc="lower right", fontsize=8)
    right.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["worker"]:
        return worker()
    print("usage: python -m bench.fleet worker (run the scenario with bench/run.py --only 7)")
    return 2


if __name__ == "__main__":
    sys.exit(main())
