"""Scenario 6: the table formats (Delta, Iceberg) against Parquet files, in the same run.

Every figure is a ratio to Parquet files (the typed files format with manifests) measured in the
same run, or a difference between two runs of the same format:

- throughput of a 91-day window into local tables vs Parquet files, best of interleaved rounds;
- the commit of a 31-day window on S3 (moto, in a process of its own): seconds after the last
  Lucca answer, and the object-store requests counted by the server, vs Parquet files;
- peak RSS of whole-year runs of 10,000 and 100,000 records, fresh processes;
- the weekly maintenance (compaction, expiry, cleanup) after a week of daily runs with lookback.

A format whose library is missing (the ``delta`` / ``iceberg`` extras), or a sink without
``maintain`` (the maintenance operator's work), is reported "not available" instead of failing
the benchmark.

``python -m bench.tables serve-s3 --port-file F`` is the S3 server's child process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_lucca.extraction.schema import PARTITION_COLUMN
from bench.common import (
    ROOT,
    BenchSandbox,
    OperatorRun,
    ScenarioResult,
    expected_counts,
    fmt_int,
    iceberg_catalog_connection,
    run_operator,
    scratch_dir,
    window_count,
)
from bench.scenarios import LAST_DAY, YEAR_END, YEAR_START, MainBench

if TYPE_CHECKING:
    from airflow.sdk import Context

TABLE_FORMATS = ("delta", "iceberg")
#: The files format the tables are compared with: typed columns, like theirs.
REFERENCE = "parquet"
ICEBERG_TABLE = "lucca.realized_trainings"
THROUGHPUT_ROUNDS = 2
MEMORY_SIZES = (10_000, 100_000)
#: A week of the daily DAG as shipped (lookback 7): the table the weekly maintenance finds.
MAINTENANCE_RUNS = 7
MAINTENANCE_LOOKBACK = 7
MAINTENANCE_FIRST_DAY = date(2025, 6, 9)
#: Everything replaced is eligible at once, as files older than the retention are in production;
#: and the files are as old as a week's are at the weekly maintenance (see _age_files).
MAINTENANCE_RETENTION = timedelta(0)
MAINTENANCE_FILE_AGE = timedelta(days=MAINTENANCE_RUNS + 1)
S3_RECORDS = 10_000
#: The S3 commit's window: a month (the commit's cost is per day; make bench stays short).
S3_WINDOW = (date(2025, 1, 1), date(2025, 2, 1))
#: The local throughput's window: a quarter, 91 daily partitions.
THROUGHPUT_WINDOW = (date(2025, 1, 1), date(2025, 4, 2))
S3_BUCKET = "lake"
S3_CONN = "bench_s3"
S3_COUNTS_PATH = "/_bench/requests"
S3_READY_TIMEOUT = 60.0

log = logging.getLogger("bench.tables")


# --------------------------------------------------------------------------- where a run writes


@dataclass
class Target:
    """One output of one format: what the operator is given, and how to read it back."""

    file_format: str
    output: str | None
    iceberg_conn_id: str | None = None

    def run(self, conn: str, **kwargs: Any) -> OperatorRun:
        if self.file_format == "iceberg":
            return run_operator(
                conn,
                None,
                file_format="iceberg",
                iceberg_table=ICEBERG_TABLE,
                iceberg_conn_id=self.iceberg_conn_id,
                **kwargs,
            )
        return run_operator(conn, self.output, file_format=self.file_format, **kwargs)

    def sink(self) -> Any:
        """The table sink the operator builds for this output (connections resolved as a run
        resolves them)."""
        from airflow_provider_lucca.operators.table_sinks import delta_sink, iceberg_sink

        if self.file_format == "delta":
            assert self.output is not None
            return delta_sink(self.output)
        assert self.iceberg_conn_id is not None
        return iceberg_sink(self.iceberg_conn_id, ICEBERG_TABLE)

    def day_counts(self) -> dict[date, int]:
        """Rows per day in the table's current snapshot, read through the table (delta-rs's or
        pyiceberg's scan), not from what the run reported."""
        sink = self.sink()
        if self.file_format == "delta":
            table = sink.open()
            arrow = table.to_pyarrow_table(columns=[PARTITION_COLUMN]) if table else None
        else:
            table = sink.load_table()
            arrow = table.scan(selected_fields=(PARTITION_COLUMN,)).to_arrow() if table else None
        if arrow is None:
            return {}
        grouped = arrow.group_by(PARTITION_COLUMN).aggregate([(PARTITION_COLUMN, "count")])
        return dict(
            zip(
                grouped.column(PARTITION_COLUMN).to_pylist(),
                grouped.column(f"{PARTITION_COLUMN}_count").to_pylist(),
                strict=True,
            )
        )

    def live_files(self) -> int:
        """Data files of the current snapshot."""
        sink = self.sink()
        if self.file_format == "delta":
            return len(sink.open().file_uris())
        return sum(1 for _task in sink.load_table().scan().plan_files())


def local_target(file_format: str, directory: Path, name: str) -> Target:
    """A new output in ``directory``; an Iceberg table gets a catalog of its own there."""
    if file_format == "iceberg":
        conn = iceberg_catalog_connection(f"bench_iceberg_{name}", directory)
        return Target("iceberg", None, conn)
    return Target(file_format, (directory / "lake").as_uri())


def s3_target(file_format: str, directory: Path, prefix: str) -> Target:
    """An output in the moto bucket through the Airflow connection ``bench_s3``; the Iceberg
    catalog (SQLite) stays in ``directory``, its warehouse in the bucket."""
    if file_format == "iceberg":
        conn = iceberg_catalog_connection(
            f"bench_iceberg_s3_{prefix}",
            directory,
            warehouse=f"s3://{S3_BUCKET}/{prefix}",
            aws_conn_id=S3_CONN,
        )
        return Target("iceberg", None, conn)
    return Target(file_format, f"s3://{S3_CONN}@{S3_BUCKET}/{prefix}")


def unavailable(file_format: str) -> str | None:
    """Why ``file_format`` cannot be benchmarked here (its extra missing, its sink not built
    yet), or None."""
    try:
        with scratch_dir("probe") as directory:
            local_target(file_format, directory, "probe").sink()
    except (ImportError, NotImplementedError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        from airflow_provider_lucca.client.errors import LuccaConfigError

        if isinstance(exc, LuccaConfigError):
            return str(exc)
        raise
    return None


def _nonzero(counts: dict[date, int]) -> dict[date, int]:
    return {day: count for day, count in counts.items() if count}


def _partitions(run: OperatorRun) -> dict[date, int]:
    return _nonzero({date.fromisoformat(d): n for d, n in run.summary["partitions"].items()})


def _exact(target: Target, run: OperatorRun, expected: dict[date, int]) -> bool:
    """The output holds the sandbox's truth: tables read back through their snapshot; files by
    the run's committed partitions (scenario 3 and the tests read them back)."""
    if run.records != sum(expected.values()) or _partitions(run) != expected:
        return False
    return target.file_format == REFERENCE or _nonzero(target.day_counts()) == expected


# --------------------------------------------------------------------------- the scenario


def tables(main: MainBench, rounds: int = THROUGHPUT_ROUNDS) -> ScenarioResult:
    """The four parts, each reported even when another fails: a failed part makes the scenario
    CRASHED (the benchmark exits 1) with the other parts' figures still in the table."""
    result = ScenarioResult("6. Tables (Delta, Iceberg)")
    missing = {name: unavailable(name) for name in TABLE_FORMATS}
    formats = [name for name in TABLE_FORMATS if missing[name] is None]
    for name, why in missing.items():
        if why is not None:
            result.row(f"{name}: every figure", f"not available ({why})")
    result.data["unavailable"] = {name: why for name, why in missing.items() if why}
    if not formats:
        return result
    failures: list[str] = []
    parts: list[tuple[str, Callable[[], None]]] = [
        ("throughput", lambda: _throughput(main, formats, rounds, result)),
        ("S3 commit", lambda: _s3_commit(formats, result)),
        ("memory", lambda: _memory(formats, result)),
        ("maintenance", lambda: _maintenance(main, formats, result)),
    ]
    for name, part in parts:
        began = time.perf_counter()
        try:
            part()
        except Exception as exc:
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        result.data.setdefault("part_seconds", {})[name] = round(time.perf_counter() - began, 1)
    if failures:
        result.error = "; ".join(failures)
    return result


# --------------------------------------------------------------------------- a. throughput


def _throughput(main: MainBench, formats: list[str], rounds: int, result: ScenarioResult) -> None:
    """Records/s of :data:`THROUGHPUT_WINDOW` (91 days) into a new output of each format,
    rotating the order every round so each format sees the same mix of machine load; best of
    ``rounds``."""
    names = [REFERENCE, *formats]
    start, end = THROUGHPUT_WINDOW
    expected = _nonzero({day: n for day, n in main.counts.items() if start <= day < end})
    for name in names:
        # Each format's first run in the process imports its library (deltalake, pyiceberg and
        # SQLAlchemy...): a one-off cost of a task process, paid before the measurements.
        with scratch_dir(f"warmup-{name}") as out:
            local_target(name, out, "warmup").run(main.conn, start=start, end=start + timedelta(1))
    runs: dict[str, list[OperatorRun]] = {name: [] for name in names}
    paired: dict[str, list[float]] = {name: [] for name in formats}
    exact = dict.fromkeys(names, True)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            with scratch_dir(f"tables-{name}") as out:
                target = local_target(name, out, f"round{index}")
                run = target.run(main.conn, start=start, end=end)
                exact[name] = exact[name] and _exact(target, run, expected)
            runs[name].append(run)
        for name in formats:
            paired[name].append(
                runs[name][-1].records_per_second / runs[REFERENCE][-1].records_per_second
            )
    best = {name: max(run.records_per_second for run in runs[name]) for name in names}
    days = (end - start).days
    label = f"{fmt_int(sum(expected.values()))} records, {days} days, new output, best of {rounds}"
    result.row(
        f"throughput, parquet files ({label})",
        f"{fmt_int(best[REFERENCE])} records/s",
        "records exact",
        exact[REFERENCE],
    )
    for name in formats:
        cpu = min(run.cpu / run.records * 1e6 for run in runs[name])
        reference_cpu = min(run.cpu / run.records * 1e6 for run in runs[REFERENCE])
        result.row(
            f"throughput, {name} table vs parquet files",
            f"{fmt_int(best[name])} records/s = {best[name] / best[REFERENCE]:.2f}x parquet "
            f"(paired rounds: {', '.join(f'{r:.2f}' for r in paired[name])}); CPU per record "
            f"{cpu:.1f} us vs {reference_cpu:.1f} us",
            "records exact (read back through the table)",
            exact[name],
        )
        _ratio(result, name, "throughput\n(records/s)", best[name] / best[REFERENCE])
    result.data["throughput"] = {
        "window": [start.isoformat(), end.isoformat()],
        "records": sum(expected.values()),
        "runs": {name: [_figures(run) for run in runs[name]] for name in names},
        "paired_ratios_to_parquet": paired,
        "records_exact": exact,
    }


def _ratio(result: ScenarioResult, name: str, figure: str, value: float) -> None:
    """A ratio to Parquet files, for the plot."""
    result.data.setdefault("ratios", {}).setdefault(name, {})[figure] = round(value, 3)


def _figures(run: OperatorRun) -> dict[str, Any]:
    return {
        "records": run.records,
        "requests": run.requests,
        "wall": round(run.wall, 3),
        "cpu": round(run.cpu, 3),
        "records_per_second": round(run.records_per_second, 1),
        "table_version": run.summary.get("table_version"),
    }


# --------------------------------------------------------------------------- b. S3 commit


class CountingS3:
    """moto's S3 server (the app ``ThreadedMotoServer`` serves) in a process of its own, on a
    free loopback port, noting the time and kind of every request it serves.

    A process of its own keeps moto's CPU off the measured interpreter, as the sandbox's. The
    request log is what the object store saw, whichever library (s3fs, delta-rs's object_store,
    pyarrow) made the requests; times are ``time.monotonic()``, the same clock in both processes.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> CountingS3:
        with tempfile.TemporaryDirectory(prefix="lucca-bench-s3-") as workdir:
            port_file = Path(workdir) / "port"
            command = [sys.executable, "-m", "bench.tables", "serve-s3"]
            command += ["--port-file", str(port_file)]
            self.process = subprocess.Popen(
                command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + S3_READY_TIMEOUT
            while not port_file.exists() or not port_file.read_text().strip():
                if self.process.poll() is not None:
                    raise RuntimeError(f"the S3 server exited with {self.process.returncode}")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"the S3 server did not listen in {S3_READY_TIMEOUT} s")
                time.sleep(0.05)
            self.url = f"http://127.0.0.1:{int(port_file.read_text())}"
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def requests(self) -> list[tuple[float, str]]:
        """(monotonic time, kind) of every request served so far."""
        with urllib.request.urlopen(self.url + S3_COUNTS_PATH, timeout=30) as response:
            return [(float(at), str(kind)) for at, kind in json.load(response)]

    def connection(self, conn_id: str) -> str:
        """An Airflow ``aws`` connection to this server (moto takes any key)."""
        os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(
            {
                "conn_type": "aws",
                "login": "bench",
                "password": "bench",
                "extra": {"endpoint_url": self.url, "region_name": "us-east-1"},
            }
        )
        return conn_id

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        ).create_bucket(Bucket=name)


def _request_kind(method: str, path: str) -> str:
    """A GET on a bucket (path-style ``/bucket``: a listing, or now and then its location) is a
    LIST; any other request is its method."""
    if method == "GET" and path.strip("/").count("/") == 0:
        return "LIST"
    return method


def serve_s3(port_file: Path) -> None:
    """The child process: moto's S3 app behind a request log, until SIGTERM."""
    from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    app = DomainDispatcherApplication(create_backend_app)
    served: list[tuple[float, str]] = []
    lock = threading.Lock()

    def counting(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == S3_COUNTS_PATH:
            with lock:
                body = json.dumps(served).encode()
            start_response(
                "200 OK",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        with lock:
            served.append((time.monotonic(), _request_kind(environ["REQUEST_METHOD"], path)))
        result: Iterable[bytes] = app(environ, start_response)
        return result

    server = make_server(
        "127.0.0.1", 0, counting, threaded=True, request_handler=MotoRequestHandler
    )
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    staged = port_file.with_suffix(".tmp")
    staged.write_text(str(server.server_address[1]))
    staged.replace(port_file)
    server.serve_forever()


@dataclass
class S3Run:
    """One operator run to S3: its wall time split at the last Lucca answer, and the object
    store's requests before and after it."""

    run: OperatorRun
    commit_seconds: float
    requests: dict[str, int] = field(default_factory=dict)
    commit_requests: dict[str, int] = field(default_factory=dict)
    exact: bool = False

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def total_commit_requests(self) -> int:
        return sum(self.commit_requests.values())


def _kinds(requests: Iterable[tuple[float, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _at, kind in requests:
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items()))


def _s3_run(server: CountingS3, target: Target, conn: str, expected: dict[date, int]) -> S3Run:
    last_answer = [0.0]

    def answered() -> None:
        last_answer[0] = time.monotonic()

    began = time.monotonic()
    run = target.run(conn, start=S3_WINDOW[0], end=S3_WINDOW[1], on_response=answered)
    ended = time.monotonic()
    served = [(at, kind) for at, kind in server.requests() if began <= at <= ended]
    figures = S3Run(run, ended - last_answer[0])
    figures.requests = _kinds(served)
    figures.commit_requests = _kinds((at, kind) for at, kind in served if at > last_answer[0])
    figures.exact = _exact(target, run, expected)
    return figures


def _s3_commit(formats: list[str], result: ScenarioResult) -> None:
    """:data:`S3_WINDOW` (31 days) to an empty prefix, then the same window again (a re-run
    replacing every day: the history DAG's case), per format, to moto S3 in its own process.

    A sandbox of its own with :data:`S3_RECORDS` records over the year: what the commit costs
    is mostly per day (31 partitions), and a smaller stream keeps the scenario short.
    """
    names = [REFERENCE, *formats]
    expected = _nonzero(
        {
            day: count
            for day, count in expected_counts(S3_RECORDS, YEAR_START, LAST_DAY).items()
            if S3_WINDOW[0] <= day < S3_WINDOW[1]
        }
    )
    runs: dict[str, list[S3Run]] = {}
    with (
        BenchSandbox(S3_RECORDS, YEAR_START, LAST_DAY) as sandbox,
        CountingS3() as server,
        scratch_dir("s3") as scratch,
    ):
        conn = sandbox.connection("lucca_s3", 0)
        server.connection(S3_CONN)
        server.create_bucket(S3_BUCKET)
        for name in names:
            # A one-day run first: the S3 filesystem's and the catalog's one-off set-up.
            with scratch_dir(f"s3-warm-{name}", str(scratch)) as directory:
                warm = s3_target(name, directory, f"warmup-{name}")
                warm.run(conn, start=YEAR_START, end=YEAR_START + timedelta(1))
        for name in names:
            directory = scratch / name
            directory.mkdir()
            target = s3_target(name, directory, name)
            runs[name] = [_s3_run(server, target, conn, expected) for _ in range(2)]
    reference = runs[REFERENCE]
    for name in names:
        for index, label in enumerate(("first run", "re-run")):
            figures, base = runs[name][index], reference[index]
            value = (
                f"commit {figures.commit_seconds:.1f} s, {figures.total_commit_requests:,} "
                f"requests ({_describe(figures.commit_requests)}); whole run "
                f"{figures.run.wall:.1f} s, {figures.total_requests:,} requests"
            )
            if name != REFERENCE:
                value += (
                    f" = {figures.commit_seconds / base.commit_seconds:.2f}x the seconds and "
                    f"{figures.total_commit_requests / base.total_commit_requests:.2f}x the "
                    "requests of parquet files' commit"
                )
            result.row(
                f"S3 (moto), {(S3_WINDOW[1] - S3_WINDOW[0]).days}-day window, {label}: {name}"
                + (" files" if name == REFERENCE else " table"),
                value,
                "records exact",
                figures.exact,
            )
    for name in formats:
        rerun, base = runs[name][-1], reference[-1]
        _ratio(
            result, name, "S3 re-run:\ncommit seconds", rerun.commit_seconds / base.commit_seconds
        )
        _ratio(
            result,
            name,
            "S3 re-run:\ncommit requests",
            rerun.total_commit_requests / base.total_commit_requests,
        )
    result.data["s3"] = {
        name: [
            {
                **_figures(figures.run),
                "commit_seconds": round(figures.commit_seconds, 3),
                "requests": figures.requests,
                "commit_requests": figures.commit_requests,
                "records_exact": figures.exact,
            }
            for figures in runs[name]
        ]
        for name in names
    }


def _describe(kinds: dict[str, int]) -> str:
    return ", ".join(f"{count:,} {kind}" for kind, count in kinds.items()) or "none"


# --------------------------------------------------------------------------- c. memory


def _memory(formats: list[str], result: ScenarioResult) -> None:
    """Peak RSS of whole-year runs, each in a fresh process (bench.memory_child), per format
    and size, against one sandbox per size. The children run side by side: a process's peak
    RSS does not depend on what runs beside it, and the scenario waits for the longest run
    instead of the sum. Their output goes to files, so that a full pipe never stalls one."""
    children: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in formats}
    running: dict[tuple[str, int], subprocess.Popen[bytes]] = {}
    with ExitStack() as stack:
        logs = stack.enter_context(scratch_dir("memory-out"))
        try:
            for size in MEMORY_SIZES:
                sandbox = stack.enter_context(BenchSandbox(size, YEAR_START, LAST_DAY))
                for name in formats:
                    command = [sys.executable, "-m", "bench.memory_child", "--url", sandbox.url]
                    command += ["--start", YEAR_START.isoformat(), "--end", YEAR_END.isoformat()]
                    command += ["--file-format", name]
                    with (
                        open(logs / f"{name}-{size}.out", "wb") as stdout,
                        open(logs / f"{name}-{size}.err", "wb") as stderr,
                    ):
                        running[name, size] = subprocess.Popen(
                            command, cwd=ROOT, stdout=stdout, stderr=stderr
                        )
            for (name, size), child in running.items():
                child.wait(timeout=900)
                if child.returncode != 0:
                    errors = (logs / f"{name}-{size}.err").read_text(errors="replace")
                    raise RuntimeError(
                        f"memory child ({name}, {size} records) failed with "
                        f"{child.returncode}:\n{errors[-3000:]}"
                    )
                output = (logs / f"{name}-{size}.out").read_text().strip().splitlines()[-1]
                children[name][size] = json.loads(output)
        finally:
            for child in running.values():
                if child.poll() is None:
                    child.kill()
                    child.wait(timeout=10)
    mb = 1024 * 1024
    small, large = MEMORY_SIZES
    for name in formats:
        child = children[name]
        difference = (child[large]["peak_rss_bytes"] - child[small]["peak_rss_bytes"]) / mb
        exact = all(child[size]["records"] == size for size in MEMORY_SIZES)
        streamed = " / ".join(
            f"{_rss_at_last_answer(child[size]) / mb:.0f}" for size in MEMORY_SIZES
        )
        result.row(
            f"peak RSS, {name}: {fmt_int(small)} vs {fmt_int(large)} records (whole year, "
            "fresh processes)",
            f"{child[small]['peak_rss_bytes'] / mb:.1f} MB vs "
            f"{child[large]['peak_rss_bytes'] / mb:.1f} MB: {difference:+.1f} MB (RSS at the "
            f"last Lucca answer: {streamed} MB, the rest is the commit; "
            f"{child[large]['requests']:,} requests, {child[large]['wall']:.1f} s side by side "
            "with the other runs)",
            "< 50 MB",
            difference < 50 and exact,
        )
    result.data["memory"] = {
        name: {
            str(size): {
                **{key: value for key, value in child.items() if key != "samples"},
                "samples": _sampled(child["samples"]),
            }
            for size, child in children[name].items()
        }
        for name in formats
    }


def _rss_at_last_answer(child: dict[str, Any]) -> int:
    """RSS sampled when the stream ended (the first sample that saw every answer): what the
    read and spool held, before the sink writes and commits."""
    samples = child["samples"]
    answers = max(int(seen) for _t, _rss, seen in samples)
    return next(int(rss) for _t, rss, seen in samples if seen == answers)


def _sampled(samples: list[list[float]], limit: int = 200) -> list[tuple[float, int, int]]:
    """(seconds, RSS KiB, answers) at most ``limit`` times: the JSON is committed."""
    points = [(round(t, 2), int(rss) // 1024, int(answers)) for t, rss, answers in samples]
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)] + [points[-1]]


# --------------------------------------------------------------------------- d. maintenance


def _files_under(root: Path) -> tuple[int, int]:
    """Physical files and bytes under ``root`` (data, logs, metadata, catalog)."""
    files = size = 0
    for path in root.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
    return files, size


def _maintenance_unavailable(target: Target) -> str | None:
    """Why the weekly maintenance of ``target``'s format cannot run here, or None."""
    try:
        import airflow_provider_lucca.operators.table_maintenance  # noqa: F401
    except ImportError as exc:
        return f"no maintenance operator ({exc})"
    sink = target.sink()
    if not hasattr(sink, "maintain"):
        return f"{type(sink).__name__}.maintain does not exist yet"
    return None


def run_maintenance(target: Target) -> dict[str, Any]:
    """The weekly DAG's maintenance task on ``target``, run as the task runner runs it (with
    its execute sentinel), keeping no time travel (:data:`MAINTENANCE_RETENTION`)."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    from airflow_provider_lucca.operators.table_maintenance import (
        RealizedTrainingsTableMaintenanceOperator,
    )

    where: dict[str, Any] = (
        {"iceberg_table": ICEBERG_TABLE, "iceberg_conn_id": target.iceberg_conn_id}
        if target.file_format == "iceberg"
        else {"output_path": target.output}
    )
    operator = RealizedTrainingsTableMaintenanceOperator(
        task_id="maintain_table",
        file_format=target.file_format,
        retention_days=MAINTENANCE_RETENTION.days,
        **where,
    )
    sentinel = {f"{type(operator).__name__}__sentinel": ExecutorSafeguard.sentinel_value}
    context = cast("Context", {"run_id": f"bench__maintenance__{time.time()}"})
    summary: dict[str, Any] = operator.execute(context, **sentinel)
    return summary


def _age_files(root: Path, age: timedelta) -> None:
    """Set every file's modification time ``age`` back: at the weekly maintenance, the week's
    files are days old, past the one-hour guard that keeps a writing run's files from being
    taken for orphans (the only thing the sinks judge by file time)."""
    when = time.time() - age.total_seconds()
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (when, when))


def _maintenance(main: MainBench, formats: list[str], result: ScenarioResult) -> None:
    """A week of the daily DAG as shipped (one day plus a 7-day lookback per run, each run
    replacing 8 days), then the weekly DAG's maintenance operator: its seconds vs a daily run,
    files before and after, and the table's rows unchanged."""
    data: dict[str, Any] = {}
    for name in formats:
        with scratch_dir("probe") as probe:
            missing = _maintenance_unavailable(local_target(name, probe, "probe"))
        if missing is not None:
            result.row(f"weekly maintenance, {name}", f"not available ({missing})")
            data[name] = None
            continue
        with scratch_dir(f"maintenance-{name}") as directory:
            target = local_target(name, directory, "maintenance")
            daily: list[OperatorRun] = []
            for offset in range(MAINTENANCE_RUNS):
                day = MAINTENANCE_FIRST_DAY + timedelta(offset)
                daily.append(
                    target.run(
                        main.conn,
                        start=day,
                        end=day + timedelta(1),
                        lookback_days=MAINTENANCE_LOOKBACK,
                    )
                )
            first = MAINTENANCE_FIRST_DAY - timedelta(MAINTENANCE_LOOKBACK)
            last = MAINTENANCE_FIRST_DAY + timedelta(MAINTENANCE_RUNS)
            expected = _nonzero({day: n for day, n in main.counts.items() if first <= day < last})
            _age_files(directory, MAINTENANCE_FILE_AGE)
            rows_before = _nonzero(target.day_counts())
            live_before, (files_before, bytes_before) = target.live_files(), _files_under(directory)
            began = time.perf_counter()
            outcome = run_maintenance(target)["counts"]
            seconds = time.perf_counter() - began
            rows_after = _nonzero(target.day_counts())
            live_after, (files_after, bytes_after) = target.live_files(), _files_under(directory)
        run_seconds = min(run.wall for run in daily)
        unchanged = rows_before == rows_after == expected
        result.row(
            f"weekly maintenance, {name} table, after {MAINTENANCE_RUNS} daily runs with "
            f"lookback {MAINTENANCE_LOOKBACK} ({fmt_int(window_count(main.counts, first, last))}"
            " records)",
            f"{seconds:.2f} s = {seconds / run_seconds:.1f}x a daily run ({run_seconds:.2f} s); "
            f"files {files_before} -> {files_after} ({bytes_before / 1024:,.0f} -> "
            f"{bytes_after / 1024:,.0f} KiB), live data files {live_before} -> {live_after}; "
            f"{_outcome(outcome)}",
            "rows unchanged",
            unchanged,
        )
        data[name] = {
            "daily_runs": [_figures(run) for run in daily],
            "maintain_seconds": round(seconds, 3),
            "retention_seconds": MAINTENANCE_RETENTION.total_seconds(),
            "outcome": outcome,
            "files": [files_before, files_after],
            "bytes": [bytes_before, bytes_after],
            "live_data_files": [live_before, live_after],
            "rows_unchanged": unchanged,
        }
    result.data["maintenance"] = data


def _outcome(outcome: object) -> str:
    if isinstance(outcome, dict):
        return ", ".join(f"{key} {value}" for key, value in outcome.items())
    return str(outcome)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve-s3", help="the counting moto S3 server (a child process)")
    serve.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args(argv)
    serve_s3(args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
