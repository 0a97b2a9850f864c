"""What every scenario shares: an isolated Airflow, sandboxes with their connections, timed runs.

The benchmark runs the real operator (hook, client, spooler, commit) in this process, the way a
task runner would call it, against the sandbox in a separate process on loopback. Every figure is
compared with something measured in the same run (an ideal request count, a baseline loop, a
second run), because the machine is shared and absolute timings move by 2x from one minute to the
next.
"""

from __future__ import annotations

import atexit
import gzip
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from lucca_sandbox import DEFAULT_API_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_KEY = DEFAULT_API_KEY
#: Lucca's documented limits: the physical ceiling of any extraction is their product.
LUCCA_REQUESTS_PER_MINUTE = 50
PAGE_SIZE = 100
DATASET_SEED = 42


#: Where the system would put temporary files, before :func:`use_scratch_root` moves them.
SYSTEM_TMP = tempfile.gettempdir()
SCRATCH_ENV = "LUCCA_BENCH_TMPDIR"


def use_scratch_root() -> Path:
    """Put every temporary file of the run, the operator's included (TMPDIR), in one directory.

    Default: a RAM file system (``/dev/shm``) when there is one, else ``data/bench-tmp/`` in the
    repository (git-ignored); ``$LUCCA_BENCH_TMPDIR`` overrides both. Scenario 3 measures CPU
    throughput, and on this VM's disk creating a file or directory costs anything from 0.02 to
    1 ms of system time, changing from one minute to the next (the operator creates ~4 inodes
    per daily partition, the baseline one file in all): on disk the benchmark would time the
    image's inode allocator instead of the code. Scenario 3 reports that cost on the disk next
    to the results. Removed at exit.
    """
    override = os.environ.get(SCRATCH_ENV)
    shm = Path("/dev/shm")
    if override:
        base = Path(override)
    elif shm.is_dir() and os.access(shm, os.W_OK):
        base = shm / "lucca-bench"
    else:
        base = ROOT / "data" / "bench-tmp"
    base.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="run-", dir=base))
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None  # gettempdir() caches its answer: make it read TMPDIR again
    atexit.register(shutil.rmtree, root, True)
    return root


def isolate_airflow() -> str:
    """Give Airflow a throw-away home before anything imports it.

    The benchmark must never read or write ``~/airflow``; and the operator's INFO lines (one a
    second, plus one per retry) would bury the results table, so only errors are logged.
    """
    if "airflow" in sys.modules:
        raise RuntimeError("isolate_airflow() must run before Airflow is imported")
    home = tempfile.mkdtemp(prefix="lucca-bench-airflow-")
    os.environ["AIRFLOW_HOME"] = home
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
    return home


def ideal_requests(records: int) -> int:
    """The fewest requests that can return ``records``: full pages, and one request for none."""
    return max(1, -(-records // PAGE_SIZE))


def year_days(start: date, end: date) -> Iterator[date]:
    day = start
    while day < end:
        yield day
        day += timedelta(days=1)


@dataclass
class Row:
    """One line of the results table; ``met`` is None for figures that have no target."""

    scenario: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None

    @property
    def status(self) -> str:
        return "" if self.met is None else ("met" if self.met else "MISSED")


@dataclass
class ScenarioResult:
    """Rows for the table, and the raw figures behind them for the JSON file."""

    name: str
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def row(
        self, figure: str, value: str, target: str = "", met: bool | None = None
    ) -> ScenarioResult:
        self.rows.append(Row(self.name, figure, value, target, met))
        return self


class BenchSandbox:
    """A sandbox process plus the Airflow connections that point at it.

    Connections are environment variables (``AIRFLOW_CONN_*``), so the hook reads them the way a
    deployment would, with no metadata database.
    """

    def __init__(self, records: int, start: date, end: date, extra_args: list[str] | None = None):
        from lucca_sandbox.process import SandboxProcess

        self.records = records
        self.start, self.end = start, end
        args = ["--records", str(records), "--start", start.isoformat(), "--end", end.isoformat()]
        args += ["--seed", str(DATASET_SEED), *(extra_args or [])]
        self.process = SandboxProcess(args)

    def __enter__(self) -> BenchSandbox:
        self.process.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.process.stop()

    @property
    def url(self) -> str:
        return self.process.url

    def connection(self, conn_id: str, requests_per_minute: int) -> str:
        """Define ``conn_id`` for this sandbox with the given pacing; return the id."""
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {
                "conn_type": "lucca",
                "host": self.url,
                "password": SANDBOX_KEY,
                "extra": {"requests_per_minute": requests_per_minute, "page_size": PAGE_SIZE},
            }
        )
        return conn_id

    def configure(self, **changes: Any) -> dict[str, Any]:
        return self.process.admin("config", changes)

    def reset_stats(self) -> None:
        self.process.admin("reset-stats", {})

    def stats(self) -> dict[str, Any]:
        return self.process.stats()

    def cpu_seconds(self) -> float:
        """CPU the sandbox process has used so far, to show it is not the bottleneck."""
        import psutil

        assert self.process.process is not None
        times = psutil.Process(self.process.process.pid).cpu_times()
        return float(times.user + times.system)


def iceberg_catalog_connection(
    conn_id: str, directory: Path, warehouse: str | None = None, **properties: str
) -> str:
    """Define ``conn_id`` as a pyiceberg SQL catalog in ``directory`` (SQLite); return the id.

    The warehouse is ``directory/warehouse`` unless given (``s3://...``, with ``aws_conn_id`` or
    ``s3.*`` in ``properties``). Like the sandbox's, the connection is an environment variable,
    read the way a deployment's would be.
    """
    extra = {
        "type": "sql",
        "uri": f"sqlite:///{directory / 'catalog.db'}",
        "warehouse": warehouse or (directory / "warehouse").as_uri(),
        **properties,
    }
    os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
        {"conn_type": "generic", "extra": extra}
    )
    return conn_id


@dataclass
class OperatorRun:
    """One ``RealizedTrainingsOperator.execute`` and what it cost."""

    summary: dict[str, Any]
    wall: float
    cpu: float
    retry_wait: float
    pacing_wait: float
    client_statuses: dict[int, int]
    #: (seconds since execute started, HTTP status) of every answer, when asked for.
    timeline: list[tuple[float, int]]

    @property
    def records(self) -> int:
        return int(self.summary["records"])

    @property
    def requests(self) -> int:
        return int(self.summary["requests"])

    @property
    def records_per_second(self) -> float:
        return self.records / self.wall


def run_operator(
    conn_id: str,
    output: str | None,
    *,
    start: date | None = None,
    end: date | None = None,
    context: dict[str, Any] | None = None,
    file_format: str = "jsonl",
    lookback_days: int = 0,
    timeline: bool = False,
    on_response: Callable[[], None] | None = None,
    iceberg_table: str | None = None,
    iceberg_conn_id: str | None = None,
) -> OperatorRun:
    """Run the operator the way the task runner does (with its execute sentinel), timed.

    Either an explicit window (``start``/``end``, like the history DAG's rendered params) or a
    ``context`` with a data interval (like the daily DAG). A new operator, hence a new hook,
    client and connection pool, is built for every run, as in a fresh task process. An Iceberg
    run has no ``output``: its table and catalog connection say where the records go.
    """
    from airflow.sdk.bases.operator import ExecutorSafeguard

    from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator

    iceberg: dict[str, Any] = {}
    if iceberg_table is not None:
        iceberg["iceberg_table"] = iceberg_table
    if iceberg_conn_id is not None:
        iceberg["iceberg_conn_id"] = iceberg_conn_id
    operator = RealizedTrainingsOperator(
        task_id="extract",
        lucca_conn_id=conn_id,
        output_path=output,
        session_end_from=start.isoformat() if start else None,
        session_end_until=end.isoformat() if end else None,
        file_format=file_format,
        lookback_days=lookback_days,
        **iceberg,
    )
    client = operator.hook.client
    events: list[tuple[float, int]] = []
    began = time.perf_counter()
    if timeline or on_response is not None:

        def record(response: Any, *args: Any, **kwargs: Any) -> None:
            if timeline:
                events.append((time.perf_counter() - began, int(response.status_code)))
            if on_response is not None:
                on_response()

        client.session.hooks["response"].append(record)
    sentinel = {f"{type(operator).__name__}__sentinel": ExecutorSafeguard.sentinel_value}
    cpu_before = time.process_time()
    began = time.perf_counter()
    # A plain dict holds what the operator reads of Airflow's Context (a TypedDict).
    # The task runner's outlet_events: where the operator puts its asset event's extra.
    events_by_outlet: defaultdict[object, SimpleNamespace] = defaultdict(
        lambda: SimpleNamespace(extra={})
    )
    task_context = cast(
        "Context",
        {"run_id": f"bench__{began}", **(context or {}), "outlet_events": events_by_outlet},
    )
    summary = operator.execute(task_context, **sentinel)
    wall = time.perf_counter() - began
    cpu = time.process_time() - cpu_before
    client.close()
    return OperatorRun(
        summary=summary,
        wall=wall,
        cpu=cpu,
        retry_wait=client.stats.retry_wait_seconds,
        pacing_wait=client.stats.pacing_wait_seconds,
        client_statuses=dict(client.stats.statuses),
        timeline=events,
    )


@contextmanager
def scratch_dir(prefix: str, base: str | None = None) -> Iterator[Path]:
    """A directory removed afterwards: 500,000 records leave a few hundred MB behind."""
    path = Path(tempfile.mkdtemp(prefix=f"lucca-bench-{prefix}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def part_checksums(output: Path) -> dict[str, list[str]]:
    """sha256 of the records of every committed part, per day, found through the manifests.

    Two extractions of the same data must commit the same records in the same order whatever
    happened on the way (faults, one pass or daily runs): comparing checksums proves "exact"
    without trusting the counts the runs report about themselves. The decompressed content is
    hashed, because the gzip header holds the staging file's name, which carries the run token.
    """
    result: dict[str, list[str]] = {}
    for manifest_path in sorted(output.glob("session_end_on=*/_manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        day = manifest["partition"]["session_end_on"]
        digests = []
        for entry in manifest["files"]:
            data = (manifest_path.parent / entry["name"]).read_bytes()
            if entry["name"].endswith(".gz"):
                data = gzip.decompress(data)
            digests.append(hashlib.sha256(data).hexdigest())
        result[day] = digests
    return result


def expected_counts(records: int, start: date, end: date) -> dict[date, int]:
    """Records per ``sessionEndsOn`` day, from the sandbox's own generator and seed.

    The ground truth every "records exact" check uses, independent of what the client reports.
    """
    from lucca_sandbox.data import generate_records

    counts: dict[date, int] = {}
    for record in generate_records(DATASET_SEED, records, start, end):
        day = date.fromisoformat(record["sessionEndsOn"])
        counts[day] = counts.get(day, 0) + 1
    return counts


def window_count(counts: dict[date, int], start: date, end: date) -> int:
    return sum(n for day, n in counts.items() if start <= day < end)


def pct(ratio: float) -> str:
    return f"{ratio * 100:+.1f}%"


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"
