"""`make demo`: the main job end to end, with real Airflow, against the bundled Lucca sandbox.

1. start the sandbox (20,000 realized trainings over 2024-2025, a 600 requests/min limit) or use
   your account when LUCCA_HOST / LUCCA_API_KEY (or AIRFLOW_CONN_LUCCA_DEFAULT) are set;
2. prepare a local Airflow (SQLite) under data/demo/airflow_home;
3. run the history DAG over a quarter, then the daily DAG over a few days, with ``dag.test()``;
4. print the partitions, the report and the requests made; stop what it started.

A second run re-extracts the same windows and leaves the same data: the commits are idempotent.

``--format delta`` (``make demo FORMAT=delta``) writes a Delta table under
data/demo/lake/lucca/realized_trainings_delta instead, ``--format iceberg`` an Iceberg table in a
SQLite catalog with its warehouse under data/demo/iceberg; both print the table's history, where
each run's commit carries its window, counts and run id.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from local_airflow import (
    ROOT,
    airflow_env,
    prepare_metadata_db,
    real_account_connection,
    sandbox_connection,
)

DEMO_DIR = Path(os.environ.get("LUCCA_DEMO_DIR") or ROOT / "data" / "demo")
#: ``--format`` values: the DAGs' LUCCA_FILE_FORMAT (dags/lucca_common.py).
FORMATS = ("jsonl", "parquet", "delta", "iceberg")
ICEBERG_TABLE = "lucca.realized_trainings"
ICEBERG_CONN_ID = "iceberg_demo"
HISTORY = (date(2025, 1, 1), date(2025, 4, 1))
DAILY_DAYS = [date(2025, 4, 1), date(2025, 4, 2), date(2025, 4, 3)]
SANDBOX_RPM = 600
#: Where the DAGs' derive task writes (dags/lucca_training_hours_report.py).
REPORT_DIR = "_reports/training_hours_by_employee_month"


def step(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history-from", type=date.fromisoformat, default=HISTORY[0])
    parser.add_argument("--history-until", type=date.fromisoformat, default=HISTORY[1])
    parser.add_argument("--daily-days", type=int, default=len(DAILY_DAYS))
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="jsonl",
        help="jsonl (default) or parquet files with manifests, or a delta / iceberg table",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    # Files and a table never share a root; each format has its own.
    name = "realized_trainings" + ("" if args.format == "jsonl" else f"_{args.format}")
    output = DEMO_DIR / "lake" / "lucca" / name
    settings = {"LUCCA_FILE_FORMAT": args.format}
    if args.format == "iceberg":
        settings |= iceberg_settings(DEMO_DIR / "iceberg")
    conn = os.environ.get("AIRFLOW_CONN_LUCCA_DEFAULT") or real_account_connection()

    from lucca_sandbox.process import SandboxProcess

    sandbox = None
    try:
        if conn is None:
            step("Starting the Lucca sandbox (20,000 records, 600 requests/min limit)")
            DEMO_DIR.mkdir(parents=True, exist_ok=True)
            sandbox = SandboxProcess(
                [
                    *("--records", "20000", "--start", "2024-01-01", "--end", "2025-12-31"),
                    *("--requests-per-minute", str(SANDBOX_RPM)),
                ],
                log_path=str(DEMO_DIR / "sandbox.log"),
            ).start()
            conn = sandbox_connection(sandbox.url, SANDBOX_RPM)
            print(f"    listening on {sandbox.url}")
        else:
            print("Using the Lucca connection from the environment (your account).")
        env = airflow_env(DEMO_DIR / "airflow_home", output.as_uri(), conn, **settings)
        step(f"Preparing Airflow's metadata DB in {DEMO_DIR / 'airflow_home'}")
        prepare_metadata_db(env)

        first, until = args.history_from, args.history_until
        step(f"History DAG: one pass over [{first}, {until})")
        run_dags(env, ["history", first.isoformat(), until.isoformat()])
        days = [until + timedelta(days=offset) for offset in range(args.daily_days)]
        step(f"Daily DAG: {len(days)} runs, {days[0]} .. {days[-1]} (Europe/Paris, 7-day lookback)")
        run_dags(env, ["daily", *(day.isoformat() for day in days)])

        step("What was written")
        if args.format == "delta":
            print_delta_table(output)
        elif args.format == "iceberg":
            print_iceberg_table(DEMO_DIR / "iceberg")
        else:
            print_partitions(output)
        print_report(output)
        if sandbox is not None:
            stats = sandbox.stats()
            print(
                f"\nRequests to the sandbox: {stats['requests']} "
                f"(by status: {stats['by_status']}); every page paced under {SANDBOX_RPM}/min."
            )
        if args.format == "iceberg":
            catalog = DEMO_DIR / "iceberg"
            data = (
                f"{ICEBERG_TABLE} in {catalog / 'catalog.db'} (warehouse {catalog / 'warehouse'})"
            )
            data += f", reports under {output}"
        else:
            data = str(output)
        print(f"\nDone in {time.monotonic() - started:.0f} s. Data: {data}")
        print(f"Airflow task logs: {DEMO_DIR / 'airflow_home' / 'logs'}")
        return 0
    finally:
        if sandbox is not None:
            sandbox.stop()


def run_dags(env: dict[str, str], spec: list[str]) -> None:
    """Run DAGs with ``dag.test()`` in a child process that has the demo's Airflow environment."""
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve().parent / "run_dag_tests.py"), *spec],
        env=env,
        check=True,
        timeout=600,
    )


def print_partitions(output: Path) -> None:
    by_month: dict[str, list[int]] = {}
    for manifest_path in sorted(output.glob("session_end_on=*/_manifest.json")):
        manifest = json.loads(manifest_path.read_text())
        month = manifest["partition"]["session_end_on"][:7]
        by_month.setdefault(month, []).append(manifest["record_count"])
    print(f"Partitions under {output}:")
    print(f"    {'month':<8} {'days':>5} {'records':>8}")
    for month, counts in by_month.items():
        print(f"    {month:<8} {len(counts):>5} {sum(counts):>8}")
    total = sum(sum(counts) for counts in by_month.values())
    print(f"    {'total':<8} {sum(map(len, by_month.values())):>5} {total:>8}")
    sample = next(output.glob("session_end_on=*/_manifest.json"), None)
    if sample:
        print(f"Example manifest: {sample}")


def iceberg_catalog(home: Path) -> dict[str, str]:
    """The demo's Iceberg catalog: SQLite, its warehouse on local disk, both under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        "type": "sql",
        "uri": f"sqlite:///{home / 'catalog.db'}",
        "warehouse": (home / "warehouse").as_uri(),
    }


def iceberg_settings(home: Path) -> dict[str, str]:
    """The DAGs' Iceberg settings: the table in the demo's catalog, through its own connection
    (a catalog the user configured as ``iceberg_default`` is left alone)."""
    connection = {"conn_type": "generic", "extra": iceberg_catalog(home)}
    return {
        f"AIRFLOW_CONN_{ICEBERG_CONN_ID.upper()}": json.dumps(connection),
        "LUCCA_ICEBERG_CONN_ID": ICEBERG_CONN_ID,
        "LUCCA_ICEBERG_TABLE": ICEBERG_TABLE,
    }


def print_records_by_month(title: str, days: list[date]) -> None:
    """Days holding records and records per month, from the ``session_end_on`` of every row."""
    by_month: dict[str, Counter[date]] = {}
    for day in days:
        by_month.setdefault(f"{day:%Y-%m}", Counter())[day] += 1
    print(title)
    print(f"    {'month':<8} {'days':>5} {'records':>8}")
    for month, counts in sorted(by_month.items()):
        print(f"    {month:<8} {len(counts):>5} {counts.total():>8}")
    total_days = sum(len(counts) for counts in by_month.values())
    print(f"    {'total':<8} {total_days:>5} {len(days):>8}")


def print_history(title: str, commits: list[dict[str, Any]], keys: tuple[str, ...] = ()) -> None:
    """One line per commit, newest first, then the run metadata (``lucca.*``, and ``keys``) of
    the latest run's commit."""
    print(f"\n{title}")
    width = max([len("version"), *(len(str(commit["version"])) for commit in commits)])
    print(f"    {'version':>{width}}  {'operation':<10} {'window':<24} {'records':>7}  run")
    for commit in commits:
        window = (
            f"[{commit['lucca.window_from']}, {commit['lucca.window_until']})"
            if "lucca.window_from" in commit
            else ""
        )
        print(
            f"    {commit['version']:>{width}}  {commit['operation']:<10} {window:<24} "
            f"{commit.get('lucca.records', ''):>7}  {commit.get('lucca.run_id', '')}"
        )
    latest = next((commit for commit in commits if "lucca.run_token" in commit), None)
    if latest is not None:
        print(f"Run metadata of version {latest['version']}:")
        for key, value in sorted(latest.items()):
            if key.startswith("lucca.") or key in keys:
                print(f"    {key:<24} {value}")


def print_delta_table(output: Path) -> None:
    import deltalake

    table = deltalake.DeltaTable(str(output))
    days = table.to_pyarrow_table(columns=["session_end_on"]).column(0).to_pylist()
    print_records_by_month(f"Delta table {output}, version {table.version()}:", days)
    commits = [{**entry, "operation": entry.get("operation", "")} for entry in table.history()]
    print_history("Table history (DeltaTable.history(), DESCRIBE HISTORY), newest first:", commits)


def print_iceberg_table(home: Path) -> None:
    from pyiceberg.catalog import load_catalog

    # A SQL catalog keeps the tables of each catalog name apart: the DAGs name it after the
    # connection.
    catalog = load_catalog(ICEBERG_CONN_ID, **iceberg_catalog(home))
    table = catalog.load_table(ICEBERG_TABLE)
    scan = table.scan(selected_fields=("session_end_on",))
    days = scan.to_arrow().column("session_end_on").to_pylist()
    current = table.current_snapshot()
    print_records_by_month(
        f"Iceberg table {ICEBERG_TABLE} ({table.location()}), snapshot {current.snapshot_id}:",
        days,
    )
    snapshots = sorted(table.snapshots(), key=lambda snapshot: snapshot.timestamp_ms, reverse=True)
    commits = [
        {
            **snapshot.summary.additional_properties,
            "version": snapshot.snapshot_id,
            "operation": snapshot.summary.operation.value.upper(),
        }
        for snapshot in snapshots
    ]
    print_history(
        "Snapshot log (snapshot summaries), newest first:",
        commits,
        keys=("added-records", "deleted-records", "total-records", "changed-partition-count"),
    )


def print_report(output: Path) -> None:
    reports = sorted((output / REPORT_DIR).glob("*.csv"))
    if not reports:
        return
    print("\nReports (training hours per employee and month):")
    for report in reports:
        print(f"    {report}")
    rows = list(csv.DictReader(io.StringIO(reports[0].read_text())))
    top = sorted(rows, key=lambda row: float(row["attended_hours"]), reverse=True)[:5]
    print(f"Top employees by attended hours in {reports[0].stem.split('=')[1]}:")
    for row in top:
        print(
            f"    owner {row['owner_id']:>5}: {row['attended_hours']:>7} h "
            f"in {row['realized_trainings']} trainings"
        )


if __name__ == "__main__":
    sys.exit(main())
