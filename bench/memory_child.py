"""One operator run in a fresh process, reporting its peak RSS (``python -m bench.memory_child``).

A fresh interpreter per size is the only fair comparison: the benchmark's own process has held
100,000-record datasets and pyarrow by then, and Python rarely gives memory back to the OS. Both
sizes pay the same imports, so the difference of their peaks is what the data costs.

Prints one JSON object on its last stdout line: the peak RSS, the RSS sampled every 20 ms with the
number of answers received so far, and the run's summary figures.

The peak is the kernel's high-water mark of this process's memory (``VmHWM``). ``ru_maxrss`` would
be wrong here: Linux carries it across ``exec``, so a child forked from the benchmark's 200 MB
process reports at least 200 MB whatever it does afterwards.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    SANDBOX_KEY,
    iceberg_catalog_connection,
    isolate_airflow,
    run_operator,
    scratch_dir,
)

SAMPLE_SECONDS = 0.02


def peak_rss_bytes() -> int:
    """High-water mark of this process image's RSS (``VmHWM``), ``ru_maxrss`` where unknown."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--start", type=date.fromisoformat, required=True)
    parser.add_argument("--end", type=date.fromisoformat, required=True)
    parser.add_argument(
        "--file-format", default="jsonl", choices=("jsonl", "parquet", "delta", "iceberg")
    )
    args = parser.parse_args(argv)

    import psutil

    process = psutil.Process()
    began = time.perf_counter()
    answers = [0]
    samples: list[tuple[float, int, int]] = []
    done = threading.Event()

    def sample() -> None:
        while True:
            samples.append((time.perf_counter() - began, process.memory_info().rss, answers[0]))
            if done.wait(SAMPLE_SECONDS):
                return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()

    isolate_airflow()
    import os

    os.environ["AIRFLOW_CONN_LUCCA_MEMORY"] = json.dumps(
        {
            "conn_type": "lucca",
            "host": args.url,
            "password": SANDBOX_KEY,
            "extra": {"requests_per_minute": 0},
        }
    )
    import airflow_provider_lucca.operators.realized_trainings  # noqa: F401  (imports first)

    if args.file_format == "delta":
        import deltalake  # noqa: F401  (the table library too, before "before the run")
    elif args.file_format == "iceberg":
        import pyiceberg.catalog.sql
        import pyiceberg.io.pyarrow  # noqa: F401

    def count() -> None:
        answers[0] += 1

    rss_before = process.memory_info().rss
    run_started = time.perf_counter() - began
    with scratch_dir("memory") as out:
        # An Iceberg table lives in a catalog of its own in the scratch directory (SQLite, local
        # warehouse); the other formats write under its lake/ root.
        output: str | None = (out / "lake").as_uri()
        iceberg: dict[str, str] = {}
        if args.file_format == "iceberg":
            from bench.tables import ICEBERG_TABLE

            output = None
            iceberg["iceberg_table"] = ICEBERG_TABLE
            iceberg["iceberg_conn_id"] = iceberg_catalog_connection("lucca_memory_iceberg", out)
        run = run_operator(
            "lucca_memory",
            output,
            start=args.start,
            end=args.end,
            on_response=count,
            file_format=args.file_format,
            **iceberg,
        )
    done.set()
    sampler.join()
    result = {
        "records": run.records,
        "requests": run.requests,
        "wall": run.wall,
        "peak_rss_bytes": peak_rss_bytes(),
        "sampled_peak_rss_bytes": max(rss for _t, rss, _answers in samples),
        "rss_before_run_bytes": rss_before,
        "run_started": run_started,
        "samples": samples,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
