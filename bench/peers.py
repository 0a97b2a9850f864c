"""The operator against what a data engineer would use instead, in the same run (scenarios 2, 3).

Peers: a plain ``requests`` + gzip loop (:mod:`bench.baseline`), the hook alone (its client,
records written like the loop's), the operator, dlt's ``RESTClient`` with its cursor paginator, and
Airflow's ``HttpOperator`` with a ``pagination_function``. Each runs in a worker process of its
own (:mod:`bench.peer_child`), started and imported before any measurement, against the same
sandbox; the sandbox counts the requests and 429s of each run, and the parent reads every output
back (records, distinct ids, and for the operator every day's records) against the sandbox
generator's truth, so that no peer looks fast by skipping work.

Scenario 3 runs them unthrottled, on the machine's real temporary disk (where a worker writes)
and in ``/dev/shm``, round after round in rotating order. Scenario 2 runs them against a rate
limit with Lucca's shape (50 requests in any window) and a shorter window.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any

from bench.common import (
    LUCCA_REQUESTS_PER_MINUTE,
    PAGE_SIZE,
    ROOT,
    SYSTEM_TMP,
    BenchSandbox,
    ScenarioResult,
    expected_counts,
    fmt_int,
    ideal_requests,
    window_count,
)
from bench.peer_child import MARK

LABELS = {
    "raw": "raw fetch loop (no parsing, no writing)",
    "loop": "plain requests + gzip loop",
    "hook": "LuccaHook alone (+ the loop's writing)",
    "operator": "RealizedTrainingsOperator",
    "dlt": "dlt RESTClient (cursor paginator)",
    "http_operator": "Airflow HttpOperator (pagination_function)",
}
THROUGHPUT_PEERS = ("loop", "hook", "operator", "dlt", "http_operator")
THROUGHPUT_WINDOW = (date(2025, 1, 1), date(2025, 4, 2))  # 91 daily partitions, ~25,000 records
ROUNDS = 2
#: HttpOperator's memory: a small window in a fresh process, beside the throughput's window.
MEMORY_WINDOW = (date(2025, 1, 1), date(2025, 2, 6))
_ID = re.compile(rb'^\{"id":(-?\d+)[,}]', re.MULTILINE)


class Worker:
    """One peer's process; :meth:`run` sends a command and waits for its answer."""

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.peer_child", "--peer", peer],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.rss_ready = 0
        self._ready = False

    def _answer(self) -> dict[str, Any]:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        for line in stdout:
            if line.startswith(MARK):
                answer: dict[str, Any] = json.loads(line[len(MARK) :])
                return answer
        raise RuntimeError(f"peer worker {self.peer} exited ({self.process.wait()})")

    def ready(self) -> Worker:
        """Wait for the worker's imports (once)."""
        if not self._ready:
            self.rss_ready = int(self._answer()["rss"])
            self._ready = True
        return self

    def run(self, **command: Any) -> dict[str, Any]:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(json.dumps(command, default=str) + "\n")
        stdin.flush()
        return self._answer()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_workers(peers: tuple[str, ...]) -> dict[str, Worker]:
    workers = {peer: Worker(peer) for peer in peers}
    for worker in workers.values():
        worker.ready()
    return workers


class WorkerPool:
    """The peers' workers, started at once when the benchmark starts, so that their imports
    (Airflow's take seconds) overlap the sandbox's start instead of adding to the scenarios;
    scenarios 3 and 2 use the same workers. ``fresh`` is an HttpOperator worker that runs nothing
    before its one memory measurement."""

    def __init__(self) -> None:
        self.workers = {peer: Worker(peer) for peer in ("raw", *THROUGHPUT_PEERS)}
        self.fresh = Worker("http_operator")

    def get(self, *peers: str) -> dict[str, Worker]:
        return {peer: self.workers[peer].ready() for peer in peers}

    def close(self) -> None:
        for worker in [*self.workers.values(), self.fresh]:
            worker.close()


@dataclass
class PeerRun:
    peer: str
    place: str
    records: int
    wall: float
    cpu: float
    peak_rss: int
    requests: int
    limited: int
    exact: bool
    problem: str = ""

    @property
    def rps(self) -> float:
        return self.records / self.wall if self.wall else 0.0


@dataclass
class Truth:
    counts: dict[date, int]
    start: date
    end: date
    total: int = field(init=False)

    def __post_init__(self) -> None:
        self.total = window_count(self.counts, self.start, self.end)


def check_output(peer: str, out: Path, truth: Truth) -> str:
    """'' when the output holds exactly the truth's records, else what is wrong."""
    if peer == "raw":
        return ""
    if peer == "operator":
        problems = []
        ids: set[bytes] = set()
        lines = 0
        day = truth.start
        while day < truth.end:
            parts = list((out / "lake" / f"session_end_on={day.isoformat()}").glob("part-*"))
            found = 0
            for part in parts:
                data = part.read_bytes()
                if part.name.endswith(".gz"):
                    data = gzip.decompress(data)
                    found += data.count(b"\n")
                    ids.update(_ID.findall(data))
                else:
                    import pyarrow.parquet as pq

                    table = pq.read_table(part, columns=["id"])
                    found += table.num_rows
                    ids.update(str(value).encode() for value in table.column("id").to_pylist())
            lines += found
            if found != truth.counts.get(day, 0):
                problems.append(f"{day}: {found} records, truth {truth.counts.get(day, 0)}")
            day += timedelta(days=1)
        if problems:
            return "; ".join(problems[:3])
    else:
        data = gzip.decompress((out / "all.jsonl.gz").read_bytes())
        lines = data.count(b"\n")
        ids = set(_ID.findall(data))
    if lines != truth.total or len(ids) != truth.total:
        return f"{lines} lines, {len(ids)} distinct ids, truth {truth.total}"
    return ""


def measure(
    worker: Worker,
    sandbox: BenchSandbox,
    truth: Truth,
    directory: str,
    place: str,
    **extra: Any,
) -> PeerRun:
    sandbox.reset_stats()
    answer = worker.run(url=sandbox.url, start=truth.start, end=truth.end, dir=directory, **extra)
    stats = sandbox.stats()
    out = Path(answer["out"])
    problem = answer.get("error", "")
    if not problem:
        problem = check_output(worker.peer, out, truth)
    shutil.rmtree(out, ignore_errors=True)
    if problem:
        print(f"    {worker.peer} ({place}): {problem}", flush=True)
    return PeerRun(
        peer=worker.peer,
        place=place,
        records=int(answer.get("records", 0)),
        wall=float(answer["wall"]),
        cpu=float(answer["cpu"]),
        peak_rss=int(answer["peak_rss"]),
        requests=int(stats["requests"]),
        limited=int(stats["by_status"].get("429", 0)),
        exact=not problem and int(answer.get("records", -1)) == truth.total,
        problem=problem,
    )


def places(scratch: Path) -> dict[str, str]:
    """Where the runs write: the system's temporary directory (this VM's disk, where a worker
    writes) and /dev/shm, each in a directory of this run, removed afterwards."""
    disk = tempfile.mkdtemp(prefix="lucca-bench-disk-", dir=SYSTEM_TMP)
    shm = tempfile.mkdtemp(prefix="lucca-bench-shm-", dir=str(scratch))
    return {"disk": disk, "shm": shm}


def file_system(path: str) -> str:
    """The file system type holding ``path`` (``tmpfs``, ``ext4``...), from /proc/mounts."""
    best, kind = "", "?"
    real = os.path.realpath(path)
    with open("/proc/mounts") as mounts:
        for line in mounts:
            fields = line.split()
            mount, fs = fields[1], fields[2]
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > len(
                best
            ):
                best, kind = mount, fs
    return kind


# --------------------------------------------------------------------------- 3. throughput


def throughput(
    sandbox: BenchSandbox, counts: dict[date, int], scratch: Path, pool: WorkerPool
) -> ScenarioResult:
    """Every peer extracts the same 91 days, unthrottled, on the disk and in /dev/shm."""
    result = ScenarioResult("3. Peers, CPU throughput (no limit)")
    truth = Truth(counts, *THROUGHPUT_WINDOW)
    where = places(scratch)
    workers = pool.get("raw", *THROUGHPUT_PEERS)
    runs: list[PeerRun] = []
    parquet: list[PeerRun] = []
    try:
        for directory in where.values():  # warm-up: first connection, first files
            for peer in THROUGHPUT_PEERS:
                worker = workers[peer]
                worker.run(
                    url=sandbox.url,
                    start=truth.start,
                    end=truth.start + timedelta(days=2),
                    dir=directory,
                )
        for index in range(ROUNDS):
            order = ["raw", *THROUGHPUT_PEERS]
            order = order[index % len(order) :] + order[: index % len(order)]
            for place in ("disk", "shm") if index % 2 == 0 else ("shm", "disk"):
                for peer in order:
                    runs.append(measure(workers[peer], sandbox, truth, where[place], place))
        for place, directory in where.items():
            parquet.append(
                measure(workers["operator"], sandbox, truth, directory, place, format="parquet")
            )
    finally:
        for directory in where.values():
            shutil.rmtree(directory, ignore_errors=True)

    def best(peer: str, place: str, pool: list[PeerRun] = runs) -> PeerRun:
        return min((r for r in pool if r.peer == peer and r.place == place), key=lambda r: r.wall)

    def paired(peer: str, place: str) -> list[float]:
        mine = [r for r in runs if r.peer == peer and r.place == place]
        loops = [r for r in runs if r.peer == "loop" and r.place == place]
        return [m.rps / loop.rps for m, loop in zip(mine, loops, strict=True)]

    exact = all(r.exact for r in runs + parquet)
    result.row(
        "window",
        f"{fmt_int(truth.total)} records, {(truth.end - truth.start).days} daily partitions "
        f"({truth.start} .. {truth.end - timedelta(days=1)}), best of {ROUNDS} rotating rounds "
        f"per place; disk = {where['disk']} ({file_system(where['disk'])}), shm = /dev/shm "
        f"({file_system(where['shm'])})",
    )
    table: dict[str, dict[str, Any]] = {}
    for peer in ("raw", *THROUGHPUT_PEERS):
        table[peer] = {}
        cells = []
        for place in ("disk", "shm"):
            run = best(peer, place)
            ratios = paired(peer, place) if peer != "raw" else []
            loop = best("loop", place)
            table[peer][place] = {
                "wall": round(run.wall, 3),
                "cpu": round(run.cpu, 3),
                "records_per_second": round(run.rps, 1),
                "ratio_to_loop": round(run.rps / loop.rps, 3),
                "paired_ratios": [round(r, 3) for r in ratios],
                "peak_rss_mb": round(run.peak_rss / 2**20, 1),
                "requests": run.requests,
                "answers_429": run.limited,
                "records": run.records,
                "exact": all(r.exact for r in runs if r.peer == peer and r.place == place),
            }
            cells.append(
                f"{place}: {run.wall:.2f} s, {fmt_int(run.rps)} records/s = "
                f"{run.rps / loop.rps:.2f}x loop"
                + (f" (paired {', '.join(f'{r:.2f}' for r in ratios)})" if ratios else "")
            )
        any_run = best(peer, "disk")
        target, met = "", None
        if peer == "operator":
            ratio = table[peer]["disk"]["ratio_to_loop"]
            target, met = ">= 0.90x loop on disk, records exact", ratio >= 0.9 and exact
        result.row(
            LABELS[peer],
            "; ".join(cells)
            + f"; peak RSS {any_run.peak_rss / 2**20:.0f} MB; {any_run.requests} requests, "
            f"{any_run.limited} x 429",
            target,
            met,
        )
    for place in ("disk", "shm"):
        run = best("operator", place, parquet)
        loop = best("loop", place)
        table.setdefault("operator_parquet", {})[place] = {
            "wall": round(run.wall, 3),
            "records_per_second": round(run.rps, 1),
            "ratio_to_loop": round(run.rps / loop.rps, 3),
        }
    result.row(
        "operator, parquet (1 run per place)",
        "; ".join(
            f"{place}: {table['operator_parquet'][place]['records_per_second']:,.0f} records/s = "
            f"{table['operator_parquet'][place]['ratio_to_loop']:.2f}x loop"
            for place in ("disk", "shm")
        ),
    )
    result.row(
        "records exact (every run read back: records, distinct ids, each day for the operator)",
        "yes" if exact else "NO: " + "; ".join(r.problem for r in runs + parquet if r.problem),
        "exact",
        exact,
    )
    result.data = {
        "records": truth.total,
        "window": [truth.start.isoformat(), truth.end.isoformat()],
        "rounds": ROUNDS,
        "places": {place: {"dir": d, "fs": file_system(d)} for place, d in where.items()},
        "table": table,
        "runs": [r.__dict__ for r in runs + parquet],
    }
    return result


def http_operator_memory(
    sandbox: BenchSandbox, counts: dict[date, int], worker: Worker
) -> dict[str, Any]:
    """HttpOperator's peak RSS for :data:`MEMORY_WINDOW`, in a fresh process."""
    directory = tempfile.mkdtemp(prefix="lucca-bench-httpmem-", dir=SYSTEM_TMP)
    try:
        truth = Truth(counts, *MEMORY_WINDOW)
        run = measure(worker.ready(), sandbox, truth, directory, "disk")
        worker.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return {
        "records": truth.total,
        "peak_rss_mb": round(run.peak_rss / 2**20, 1),
        "rss_after_imports_mb": round(worker.rss_ready / 2**20, 1),
        "wall": round(run.wall, 2),
        "exact": run.exact,
    }


# --------------------------------------------------------------------------- 2. rate limit

#: Lucca's limit has the shape "50 requests in any 60 s". The sandbox keeps the 50 and shortens
#: the window to 5 s (600 requests/min, Lucca's 50/min scaled 12x in time), so a peer that bursts
#: meets the limit after 50 requests as it would at Lucca, in seconds rather than minutes.
RATE_WINDOW_SECONDS = 5.0
RATE_BURST = LUCCA_REQUESTS_PER_MINUTE
RATE_PER_MINUTE = int(RATE_BURST * 60 / RATE_WINDOW_SECONDS)
RATE_RECORDS = 6_000
RATE_DAYS = (date(2025, 1, 1), date(2025, 3, 31))
RATE_PEERS = ("operator", "operator_unpaced", "hook", "loop", "dlt", "http_operator")


class ScaledSandbox(BenchSandbox):
    """A sandbox whose limiter window is :data:`RATE_WINDOW_SECONDS` (bench.scaled_sandbox)."""

    def __init__(self, records: int, start: date, end: date) -> None:
        super().__init__(records, start, end, extra_args=["--requests-per-minute", str(RATE_BURST)])
        from bench.scaled_sandbox import ScaledSandboxProcess

        self.process = ScaledSandboxProcess(self.process.args, RATE_WINDOW_SECONDS)


def rate_limited(pool: WorkerPool) -> ScenarioResult:
    """The same window through every peer against the limit: requests, 429s, wall time."""
    result = ScenarioResult("2. Peers under the rate limit")
    start, last = RATE_DAYS
    counts = expected_counts(RATE_RECORDS, start, last)
    truth = Truth(counts, start, last + timedelta(days=1))
    ideal = ideal_requests(truth.total)
    workers = pool.get("operator", "hook", "loop", "dlt", "http_operator")
    directory = tempfile.mkdtemp(prefix="lucca-bench-rate-", dir=SYSTEM_TMP)
    runs: dict[str, PeerRun] = {}
    try:
        with ScaledSandbox(RATE_RECORDS, start, last) as sandbox:
            for name in RATE_PEERS:
                peer = "operator" if name == "operator_unpaced" else name
                rpm = RATE_PER_MINUTE if name in ("operator", "hook") else 0
                run = measure(
                    workers[peer], sandbox, truth, directory, "disk", rpm=rpm, limited=True
                )
                runs[name] = run
    finally:
        shutil.rmtree(directory, ignore_errors=True)

    floor = (ideal - RATE_BURST) * RATE_WINDOW_SECONDS / RATE_BURST if ideal > RATE_BURST else 0
    paced = runs["operator"]
    pacing_floor = (ideal - 1) * 60.0 / RATE_PER_MINUTE
    result.row(
        "limit",
        f"{RATE_BURST} requests in any {RATE_WINDOW_SECONDS:g} s ({RATE_PER_MINUTE}/min: Lucca's "
        f"{LUCCA_REQUESTS_PER_MINUTE} in any 60 s scaled {60 / RATE_WINDOW_SECONDS:.0f}x in "
        f"time); {fmt_int(truth.total)} records = {ideal} pages of {PAGE_SIZE}",
    )
    best_other = min(
        (r.requests, r.limited) for name, r in runs.items() if name not in ("operator", "hook")
    )
    for name in RATE_PEERS:
        run = runs[name]
        label = (
            "operator, paced (connection requests_per_minute = the limit)"
            if name == "operator"
            else "operator with pacing off (requests_per_minute=0)"
            if name == "operator_unpaced"
            else LABELS[name] + (" paced" if name == "hook" else "")
        )
        target, met = "", None
        if name == "operator":
            target = "ideal requests, 0 x 429, fewer than every peer"
            met = (
                run.exact
                and run.requests == ideal
                and run.limited == 0
                and all(
                    r.requests > run.requests and r.limited > 0
                    for other, r in runs.items()
                    if other not in ("operator", "hook")
                )
            )
        elif not run.exact:
            target, met = "records exact", False
        result.row(
            label,
            f"{run.requests} requests ({run.requests - ideal:+d} vs ideal), {run.limited} x 429, "
            f"{run.wall:.1f} s; records exact: {'yes' if run.exact else 'NO ' + run.problem}",
            target,
            met,
        )
    result.row(
        "what the wall times mean",
        f"paced, the operator takes {paced.wall:.1f} s for a {pacing_floor:.1f} s request "
        f"stream at the limit (+{(paced.wall / max(pacing_floor, 1e-9) - 1) * 100:.0f}%); a "
        f"burst can finish sooner ({floor:.1f} s at best: {RATE_BURST} at once, then a window's "
        "wait), by spending the tenant's whole window and answering 429 to every other "
        f"integration meanwhile (least among the peers: {best_other[0]} requests, "
        f"{best_other[1]} x 429)",
    )
    result.data = {
        "limit": {"burst": RATE_BURST, "window_seconds": RATE_WINDOW_SECONDS},
        "records": truth.total,
        "ideal_requests": ideal,
        "runs": {name: run.__dict__ for name, run in runs.items()},
    }
    return result


def scenario_3(
    sandbox: BenchSandbox, counts: dict[date, int], scratch: Path, pool: WorkerPool
) -> ScenarioResult:
    """Scenario 3: :func:`throughput`, then HttpOperator's peak RSS for a small window in a fresh
    process, beside its worker's peak over the throughput's runs (all of the large window)."""
    result = throughput(sandbox, counts, scratch, pool)
    small = http_operator_memory(sandbox, counts, pool.fresh)
    table = result.data["table"]["http_operator"]
    large_mb = max(table[place]["peak_rss_mb"] for place in ("disk", "shm"))
    large_records = result.data["records"]
    result.row(
        "HttpOperator peak RSS, small vs large window",
        f"{small['peak_rss_mb']:.0f} MB for {fmt_int(small['records'])} records (a fresh "
        f"process) vs {large_mb:.0f} MB for {fmt_int(large_records)} (its worker above): "
        f"+{large_mb - small['peak_rss_mb']:.0f} MB, "
        f"{(large_mb - small['peak_rss_mb']) * 1024 / (large_records - small['records']):.2f} "
        "KB a record: every page is kept until the last one (the operator: scenario 4)",
        "records exact",
        bool(small["exact"]),
    )
    result.data["http_operator_memory"] = {
        "small": small,
        "large": {"records": large_records, "peak_rss_mb": large_mb},
    }
    return result
