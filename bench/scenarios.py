"""The scenarios of the benchmark; each returns table rows and the raw figures behind them.

Lucca allows 50 requests/min per tenant and 100 records per page: no extraction can beat 5,000
records/min, so what the client can lose is (1) requests beyond ceil(records/100), (2) time beyond
requests/limit, (3) CPU that would make it slower than the network when unthrottled, (4) memory
that grows with the window. Each scenario measures one of these against a reference taken in the
same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bench.common import (
    LUCCA_REQUESTS_PER_MINUTE,
    ROOT,
    BenchSandbox,
    OperatorRun,
    ScenarioResult,
    fmt_int,
    ideal_requests,
    part_checksums,
    pct,
    run_operator,
    scratch_dir,
    window_count,
    year_days,
)

YEAR_START, YEAR_END = date(2025, 1, 1), date(2026, 1, 1)
LAST_DAY = YEAR_END - timedelta(days=1)
MAIN_RECORDS = 100_000
TIMEZONE = "Europe/Paris"


@dataclass
class MainBench:
    """The 100,000-record sandbox most scenarios share, and its ground truth per day."""

    sandbox: BenchSandbox
    counts: dict[date, int]
    conn: str


def _status_count(stats: dict[str, Any], status: int) -> int:
    return int(stats["by_status"].get(str(status), 0))


def _downsample(points: list[Any], limit: int = 300) -> list[Any]:
    """Keep the JSON small (it is committed): at most ``limit`` evenly spread points."""
    if len(points) <= limit:
        return points
    step = len(points) / limit
    return [points[int(i * step)] for i in range(limit)] + [points[-1]]


def _run_figures(run: OperatorRun) -> dict[str, Any]:
    return {
        "records": run.records,
        "requests": run.requests,
        "retries": run.summary["retries"],
        "wall": round(run.wall, 3),
        "cpu": round(run.cpu, 3),
        "records_per_second": round(run.records_per_second, 1),
        "retry_wait": round(run.retry_wait, 3),
        "pacing_wait": round(run.pacing_wait, 3),
    }


# --------------------------------------------------------------------------- 1. request efficiency


def efficiency(main: MainBench, small: BenchSandbox, small_conn: str) -> ScenarioResult:
    """Requests made (counted by the sandbox) vs ceil(records/100), per window.

    Includes the two windows where paginators usually slip: exactly 5,000 records (a client that
    stops on a short page asks for a trailing empty page) and an empty day (one request, not 0).
    Then the history DAG's single pass over the year vs the daily DAG's 365 one-day runs.
    """
    result = ScenarioResult("1. Request efficiency")
    cases: list[tuple[str, BenchSandbox, str, date, date, int]] = [
        (
            "1 day, exactly 5,000 records",
            small,
            small_conn,
            date(2025, 3, 10),
            date(2025, 3, 11),
            5000,
        ),
        ("1 day, no record", small, small_conn, date(2025, 3, 11), date(2025, 3, 12), 0),
    ]
    for label, start, end in (
        ("1 day", date(2025, 6, 15), date(2025, 6, 16)),
        ("30 days", date(2025, 6, 1), date(2025, 7, 1)),
        ("365 days = the history DAG's pass", YEAR_START, YEAR_END),
    ):
        cases.append(
            (label, main.sandbox, main.conn, start, end, window_count(main.counts, start, end))
        )

    windows: list[dict[str, Any]] = []
    history: OperatorRun | None = None
    with scratch_dir("efficiency") as scratch:
        for index, (label, sandbox, conn, start, end, expected) in enumerate(cases):
            sandbox.reset_stats()
            out = scratch / f"case{index}"
            run = run_operator(conn, out.as_uri(), start=start, end=end)
            stats = sandbox.stats()
            ideal = ideal_requests(expected)
            served = int(stats["requests"])
            ok = run.records == expected and run.requests == ideal and served == ideal
            result.row(
                f"{label} ({fmt_int(expected)} records)",
                f"{served} request{'s' * (served != 1)} (client counted {run.requests}), "
                f"ideal {ideal}: {served - ideal:+d}",
                "0 extra requests",
                ok,
            )
            windows.append(
                {
                    "window": label,
                    "from": start.isoformat(),
                    "until": end.isoformat(),
                    "records_expected": expected,
                    "records": run.records,
                    "requests_sandbox": served,
                    "requests_client": run.requests,
                    "ideal": ideal,
                    "wall": round(run.wall, 3),
                }
            )
            if end - start == timedelta(days=365):
                history = run
                history_out = out
        assert history is not None

        # The daily DAG: one run per day of Europe/Paris, each a new operator (new hook, client
        # and connection pool) on a data interval, into the same dataset root.
        import pendulum
        from airflow.sdk import DAG, CronDataIntervalTimetable

        dag = DAG(
            "lucca_bench_daily",
            schedule=CronDataIntervalTimetable("0 0 * * *", timezone=TIMEZONE),
            start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
        )
        daily_out = scratch / "daily"
        main.sandbox.reset_stats()
        daily_wall = 0.0
        daily_requests = 0
        daily_records = 0
        for day in year_days(YEAR_START, YEAR_END):
            interval_start = pendulum.datetime(day.year, day.month, day.day, tz=TIMEZONE)
            context = {
                "dag": dag,
                "run_id": f"scheduled__{day.isoformat()}",
                "data_interval_start": interval_start,
                "data_interval_end": interval_start.add(days=1),
            }
            run = run_operator(main.conn, daily_out.as_uri(), context=context)
            daily_wall += run.wall
            daily_requests += run.requests
            daily_records += run.records
        daily_served = int(main.sandbox.stats()["requests"])
        same_bytes = part_checksums(history_out) == part_checksums(daily_out)

    daily_ideal = sum(
        ideal_requests(main.counts.get(day, 0)) for day in year_days(YEAR_START, YEAR_END)
    )
    at_limit = 60.0 / LUCCA_REQUESTS_PER_MINUTE
    result.row(
        "history DAG (1 pass) vs daily DAG (365 runs of 1 day), requests",
        f"{history.requests:,} vs {daily_served:,} ({daily_served / history.requests:.2f}x); "
        f"daily ideal {daily_ideal:,}",
        "daily: 0 extra requests",
        daily_served == daily_ideal == daily_requests,
    )
    lookback = sum(
        ideal_requests(window_count(main.counts, day - timedelta(days=7), day + timedelta(1)))
        for day in year_days(YEAR_START, YEAR_END)
    )
    result.row(
        "daily DAG as shipped (lookback_days=7), requests (computed, not run)",
        f"{lookback:,} ({lookback / history.requests:.1f}x the history pass)",
    )
    result.row(
        "history vs daily, wall time (unpaced, in-process)",
        f"{history.wall:.1f} s vs {daily_wall:.1f} s ({daily_wall / history.wall:.1f}x)",
    )
    result.row(
        "history vs daily, at Lucca's 50 requests/min",
        f"{history.requests * at_limit / 60:.1f} min vs {daily_served * at_limit / 60:.1f} min "
        "of request budget",
    )
    result.row(
        "history and daily datasets identical",
        "byte-identical parts for all 365 days" if same_bytes else "parts DIFFER",
        "identical",
        same_bytes and daily_records == history.records,
    )
    result.data = {
        "windows": windows,
        "history": _run_figures(history),
        "daily": {
            "runs": 365,
            "requests_sandbox": daily_served,
            "requests_client": daily_requests,
            "ideal": daily_ideal,
            "records": daily_records,
            "wall": round(daily_wall, 3),
            "identical_to_history": same_bytes,
            "requests_with_7_day_lookback_computed": lookback,
            "note": "365 successive in-process operator runs of one day each (a new operator, "
            "hook and client per run, window from a Europe/Paris data interval, lookback 0): what "
            "the daily DAG's extract task does per run, without Airflow's per-task process start",
        },
    }
    return result


# --------------------------------------------------------------------------- 5. faults


FAULT_WINDOW = (date(2025, 1, 1), date(2025, 3, 1))
FAULT_RATE = 0.05


def faults(main: MainBench) -> ScenarioResult:
    """5% of requests answered 503 or 429 (Retry-After: 1): exact records, the cost in time.

    The clean and the faulty run extract the same window; their committed parts must be
    byte-identical, and the extra time should be the waits the answers imposed, nothing more.
    """
    result = ScenarioResult("5. Faults (5% 503/429)")
    sandbox = main.sandbox
    start, end = FAULT_WINDOW
    expected = window_count(main.counts, start, end)
    runs: dict[str, tuple[OperatorRun, dict[str, Any], dict[str, list[str]]]] = {}
    schedule = {"rate": FAULT_RATE, "kinds": ["503", "429"], "seed": 7}
    try:
        for name, fault_schedule in (("clean", None), ("faulty", schedule)):
            sandbox.configure(faults=fault_schedule)
            sandbox.reset_stats()  # fault numbering restarts at request 1
            with scratch_dir(f"faults-{name}") as out:
                run = run_operator(main.conn, out.as_uri(), start=start, end=end)
                runs[name] = (run, sandbox.stats(), part_checksums(out))
    finally:
        sandbox.configure(faults=None)
    clean, _clean_stats, clean_parts = runs["clean"]
    faulty, faulty_stats, faulty_parts = runs["faulty"]
    injected = int(faulty_stats["faults"])
    exact = faulty.records == expected == clean.records and faulty_parts == clean_parts
    share = injected / int(faulty_stats["requests"])
    result.row(
        f"records with faults ({fmt_int(expected)} expected; {injected} faults in "
        f"{faulty_stats['requests']} requests = {share * 100:.1f}%: "
        f"{faulty_stats['faults_by_kind']})",
        f"{fmt_int(faulty.records)}, parts byte-identical to the clean run: "
        f"{'yes' if faulty_parts == clean_parts else 'NO'}",
        "exact",
        exact,
    )
    overhead = faulty.wall - clean.wall
    result.row(
        "wall time, faulty vs clean",
        f"{faulty.wall:.1f} s vs {clean.wall:.1f} s ({faulty.wall / clean.wall:.1f}x): "
        f"+{overhead:.1f} s, of which {faulty.retry_wait:.1f} s imposed waits "
        f"(Retry-After / backoff) for {faulty.summary['retries']} retries",
    )
    # Paced at Lucca's 50/min a request slot is 1.2 s, longer than these waits: the pacer makes
    # the retry wait for the next slot anyway, so each retry costs one slot and nothing more.
    slots = (faulty.requests) / clean.requests
    result.row(
        f"same extraction at Lucca's {LUCCA_REQUESTS_PER_MINUTE}/min (computed)",
        f"{faulty.requests} vs {clean.requests} request slots: {pct(slots - 1)} time "
        "(a 1 s wait fits in the 1.2 s pacing interval)",
    )
    result.data = {
        "window": [start.isoformat(), end.isoformat()],
        "records_expected": expected,
        "schedule": schedule,
        "clean": _run_figures(clean),
        "faulty": {**_run_figures(faulty), "sandbox": faulty_stats},
        "identical_parts": faulty_parts == clean_parts,
    }
    return result


# --------------------------------------------------------------------------- 4. memory


MEMORY_SIZES = (10_000, 200_000)


def memory() -> ScenarioResult:
    """Peak RSS of a whole-year operator run with 10,000 and 200,000 records, fresh processes.

    Each size gets its own sandbox process and its own interpreter for the operator, run one
    after the other so they do not compete.
    """
    result = ScenarioResult("4. Memory (peak RSS)")
    children: dict[int, dict[str, Any]] = {}
    for size in MEMORY_SIZES:
        with BenchSandbox(size, YEAR_START, LAST_DAY) as sandbox:
            command = [sys.executable, "-m", "bench.memory_child", "--url", sandbox.url]
            command += ["--start", YEAR_START.isoformat(), "--end", YEAR_END.isoformat()]
            completed = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
            )
        if completed.returncode != 0:
            raise RuntimeError(
                f"memory child ({size} records) failed with {completed.returncode}:\n"
                f"{completed.stderr[-3000:]}"
            )
        children[size] = json.loads(completed.stdout.strip().splitlines()[-1])
    small, large = (children[size] for size in MEMORY_SIZES)
    mb = 1024 * 1024
    difference = (large["peak_rss_bytes"] - small["peak_rss_bytes"]) / mb
    for size, child in children.items():
        result.row(
            f"peak RSS, {fmt_int(size)} records ({child['requests']:,} requests, "
            f"{child['wall']:.1f} s)",
            f"{child['peak_rss_bytes'] / mb:.1f} MB (VmHWM; sampled every 20 ms: "
            f"{child['sampled_peak_rss_bytes'] / mb:.1f} MB; after imports, before the run: "
            f"{child['rss_before_run_bytes'] / mb:.1f} MB)",
            met=None,
        )
    exact = all(children[size]["records"] == size for size in MEMORY_SIZES)
    result.row(
        f"peak RSS difference, {fmt_int(MEMORY_SIZES[1])} - {fmt_int(MEMORY_SIZES[0])} records",
        f"{difference:+.1f} MB",
        "< 50 MB",
        difference < 50 and exact,
    )
    result.data = {
        str(size): {
            **{key: value for key, value in child.items() if key != "samples"},
            "samples": _downsample(
                [(round(t, 2), rss // 1024, answers) for t, rss, answers in child["samples"]], 400
            ),
        }
        for size, child in children.items()
    }
    return result
