"""`make bench`: measure the extraction's losses against Lucca's physical limit, on the sandbox.

Lucca serves 50 requests/min per tenant and 100 records per page, so no extraction can beat 5,000
records/min. Every scenario runs the real operator against the sandbox (a separate process on
loopback) and reports a ratio to a reference measured in the same run:

1. request efficiency: requests vs ceil(records/100); the history DAG's pass vs 365 daily runs;
2. peers under the rate limit (Lucca's 50 requests in any window, the window scaled to 5 s): the
   operator paced, and unpaced, the hook, the plain loop, dlt and HttpOperator: requests, 429s;
3. peers unthrottled, on the machine's real temporary disk and in /dev/shm: the operator, the
   hook alone, a plain requests + gzip loop, dlt's RESTClient and Airflow's HttpOperator (time,
   records/s, peak RSS, requests), each in a worker process of its own, every output read back;
   HttpOperator's peak RSS for a small and a large window;
4. memory: peak RSS for 10,000 vs 200,000 records, fresh processes;
5. faults: 5% of requests answered 503/429, records exact, time vs a clean run;
6. tables: Delta and Iceberg vs Parquet files (throughput, commit on S3 with its requests, peak
   RSS, the weekly maintenance);
7. fleet: records/min for 1, 2, 4 and 8 rate-limited tenants in parallel (one process each, a
   budget shared in Redis), and one tenant read by two processes with and without it
   (``fleet.{md,png}``);
8. reconcile: requests and wall time at 50 requests/min (modelled from the exact request count)
   to verify 3 years of history with count probes (no change, a late import, a deletion) vs a
   full re-extraction (``reconcile.{md,png}``).

Prints a Markdown table and writes ``bench/results/latest.{json,png,md}``. Exits 1 if a scenario
crashed; a missed target is printed as MISSED but is a result, not a failure of the benchmark.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import ScenarioResult, expected_counts, isolate_airflow, use_scratch_root

SCRATCH = use_scratch_root()
isolate_airflow()

from bench import fleet, peers, reconcile, report, scenarios, tables  # noqa: E402
from bench.common import BenchSandbox  # noqa: E402

NOTES = [
    "All runs use the real RealizedTrainingsOperator (called with the task runner's execute "
    "sentinel) against `lucca-sandbox` in a separate process on 127.0.0.1, writing jsonl.gz "
    "(or parquet) through ObjectStoragePath (file://). Request counts are the sandbox's own "
    "counters; 'exact' means equal to the sandbox generator's own count per day and, where two "
    "runs are compared, byte-identical records.",
    "Temporary and output files of scenarios 1, 4, 5 and 6 live in a RAM file system (/dev/shm, "
    "see common.use_scratch_root; $LUCCA_BENCH_TMPDIR overrides). Scenario 3 measures every peer "
    "both on the machine's real temporary disk (the system's TMPDIR, where a worker writes) and "
    "in /dev/shm, side by side; scenarios 2, 7 and 8 write to the disk.",
    "'Daily DAG' = 365 successive in-process operator runs of one day each (data interval in "
    "Europe/Paris, lookback 0, a new operator/hook/client per run): what the daily DAG's extract "
    "task does per run, without Airflow's own per-task overhead (scheduling, a new process, "
    "imports: seconds per run). The example daily DAG also re-extracts a 7-day lookback; its "
    "request count is computed from the data, not run.",
    "Rate limit (scenario 2): a sandbox of its own keeps Lucca's 50 requests in any window and "
    "shortens the window to 5 s (bench.scaled_sandbox: 600/min, Lucca's 50/min scaled 12x in "
    "time), so a peer that bursts meets the limit after 50 requests as it would at Lucca. The "
    "operator and the hook pace at 600/min; the loop sleeps the Retry-After of a 429 and sends "
    "again (what one adds to it), dlt's session retries 429 honouring Retry-After (its default), "
    "HttpOperator retries through retry_args (tenacity, exponential back-off).",
    "Faults: the sandbox's 429 answers `Retry-After: 1`; its 503 carries no Retry-After, so the "
    "client backs off (1 s with 50% jitter, doubling).",
    "Peers (scenario 3): each peer is a worker process of its own (bench.peer_child), imported "
    "and warmed up before the first measurement; rounds rotate the order of the peers and of the "
    "two places. The figure is each peer's best round (other jobs on this 2-core machine only "
    "ever add time) and its ratio to the loop's best round on the same place; the paired ratio "
    "of each round is shown too. Requests and 429s are the sandbox's counters; peak RSS is the "
    "worker process's VmHWM. Every output is read back (records, distinct ids, and for the "
    "operator the records of each day) against the sandbox generator's truth.",
    "Tables: every table figure is a ratio to Parquet files (the typed files format) measured "
    "in the same scenario, each run into a new output (a new Delta root, a new Iceberg SQLite "
    "catalog with a local or S3 warehouse) unless it says re-run. 'Records exact' for a table "
    "means its current snapshot, read back through delta-rs or pyiceberg, holds the sandbox "
    "generator's count on every day.",
    "Tables on S3: moto's server runs in a process of its own and logs every request it serves; "
    "a run's 'commit' is everything after its last Lucca answer (spool read, file writes, the "
    "commit, and for files the sweep), its requests those the server served meanwhile. moto "
    "answers in milliseconds on loopback and a LIST costs more as the bucket grows: the request "
    "counts carry over to a real object store, the seconds do not.",
    "Tables, memory and maintenance: the four memory children (two formats, two sizes) run side "
    "by side (peak RSS is per process; their wall times are not comparable). The weekly "
    "maintenance is the weekly DAG's task (RealizedTrainingsTableMaintenanceOperator, the "
    "sink's maintain()) with retention_days=0 on files set 8 days back, so that everything the "
    "week replaced is eligible, as what is older than the retention is in production.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", default="1,2,3,4,5,6,7,8", help="comma list of scenario numbers (default: all)"
    )
    parser.add_argument(
        "--results", type=Path, default=report.RESULTS, help="output directory (bench/results)"
    )
    args = parser.parse_args(argv)
    only = {part.strip() for part in args.only.split(",") if part.strip()}
    started = time.perf_counter()
    results: list[ScenarioResult] = []

    def attempt(number: str, name: str, function: Callable[[], ScenarioResult]) -> None:
        if number not in only:
            return
        print(f"==> {number}. {name}", flush=True)
        began = time.perf_counter()
        try:
            result = function()
        except Exception as exc:
            traceback.print_exc()
            result = ScenarioResult(f"{number}. {name}", error=f"{type(exc).__name__}: {exc}")
        result.seconds = time.perf_counter() - began
        print(f"    {result.seconds:.0f} s", flush=True)
        results.append(result)

    # The peers' workers import while the sandbox generates its data (scenarios 3 and 2).
    pool = peers.WorkerPool() if only & {"2", "3"} else None
    try:
        y0, y1 = scenarios.YEAR_START, scenarios.LAST_DAY
        needs_main = only & {"1", "3", "5", "6"}
        if needs_main:
            print("==> starting the sandbox (100,000 records over 2025)", flush=True)
            counts = expected_counts(scenarios.MAIN_RECORDS, y0, y1)
            with BenchSandbox(scenarios.MAIN_RECORDS, y0, y1) as sandbox:
                main_bench = scenarios.MainBench(
                    sandbox, counts, sandbox.connection("lucca_bench", 0)
                )
                attempt(
                    "3",
                    "Peers, CPU throughput",
                    lambda: peers.scenario_3(sandbox, counts, SCRATCH, pool),
                )
                if "1" in only:
                    with BenchSandbox(
                        5000, y0.replace(month=3, day=10), y0.replace(month=3, day=10)
                    ) as small:
                        conn = small.connection("lucca_small", 0)
                        attempt(
                            "1",
                            "Request efficiency",
                            lambda: scenarios.efficiency(main_bench, small, conn),
                        )
                attempt("5", "Faults", lambda: scenarios.faults(main_bench))
                attempt("6", "Tables (Delta, Iceberg)", lambda: tables.tables(main_bench))
        attempt("2", "Peers under the rate limit", lambda: peers.rate_limited(pool))
        attempt("4", "Memory", scenarios.memory)
        attempt("7", "Fleet (tenants in parallel)", lambda: fleet.fleet(args.results))
        attempt("8", "Reconcile (3 years of history)", lambda: reconcile.reconcile(args.results))
    finally:
        if pool is not None:
            pool.close()
    results.sort(key=lambda result: result.name)

    total = time.perf_counter() - started
    args.results.mkdir(parents=True, exist_ok=True)
    plot_path = args.results / "latest.png"
    meta = {
        "date": report.now_iso(),
        "machine": report.machine(),
        "commit": report.git_commit(),
        "total_seconds": round(total, 1),
        "notes": [*NOTES, f"Scratch directory of this run: `{SCRATCH}`."],
        "plot": str(plot_path),
    }
    report.plot(results, plot_path)
    report.write_json(results, meta, args.results / "latest.json")
    text = report.write_markdown(results, meta, args.results / "latest.md")
    print()
    print(text)
    for line in report.missed(results):
        print(f"MISSED: {line}")
    crashed = [result.name for result in results if result.error is not None]
    for name in crashed:
        print(f"CRASHED: {name}", file=sys.stderr)
    print(f"Total runtime: {total:.0f} s; results in {args.results}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
