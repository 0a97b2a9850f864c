"""Scenario 8: verify 3 years of history with Lucca's counts (reconcile) vs a full re-extraction.

Lucca's realized trainings carry no updated-at: a late CSV import or a deletion on an old day is
only found by reading that day again. Without reconciliation, the only check of three years of
history is to re-extract all of it, ``ceil(records/100)`` requests of the tenant's 50 a minute.
Reconciliation counts each month instead (two count probes, ``fields.root=count&limit=0``), drills
into a month whose counts differ and re-extracts only the days that changed.

One tenant of 30,000 records over 2023-01-01 .. 2025-12-31 (a sandbox in its own process) is
loaded once, then measured four times on the same dataset:

(a) reconcile, nothing changed; (b) reconcile after one late import on an old day; (c) reconcile
after one deletion on another old day; (d) a full re-extraction of the three years.

Every run is unpaced against the sandbox (the bench must stay short): the requests are counted
exactly (the client's count, checked against the sandbox's own counter and request log), the
run's local work is its measured wall time, and the wall time at Lucca's 50 requests/min is
*modelled from the exact request count*: the client's pacer starts requests 60/50 = 1.2 s apart,
so ``(requests - 1) x 1.2 s`` plus the measured local work. Scenario 2 measures the pacer against
a real limit (within 2% of the ideal); here the local work between requests would overlap those
1.2 s gaps, so adding all of it is an upper bound.

Correctness is asserted inside the scenario, so a broken reconcile crashes the bench: (a) writes
nothing; after (b) and (c) every day's records (ids and attendance) equal the sandbox's truth (its
generator plus the changes it reported), only the changed day was re-extracted and every other
day's files are untouched; and the reconciled dataset is byte-identical, day by day, to the full
re-extraction (d).

Writes ``reconcile.md`` and ``reconcile.png`` next to the other results.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.common import (
    DATASET_SEED,
    LUCCA_REQUESTS_PER_MINUTE,
    PAGE_SIZE,
    SANDBOX_KEY,
    BenchSandbox,
    ScenarioResult,
    fmt_int,
    ideal_requests,
    part_checksums,
    scratch_dir,
)

NAME = "8. Reconcile (3 years of history)"
RECORDS = 30_000
FIRST_DAY, LAST_DAY = date(2023, 1, 1), date(2025, 12, 31)
PERIOD = "2023-01-01 .. 2025-12-31"
#: The old days the mutations hit: a late import in March 2023, a deletion in September 2023.
IMPORT_DAY = date(2023, 3, 15)
DELETE_DAY = date(2023, 9, 20)
MUTATION_SEED = 13
#: Seconds between two request starts at Lucca's limit, as the client's pacer spaces them.
PACED_INTERVAL = 60 / LUCCA_REQUESTS_PER_MINUTE
#: The issue's budget for a reconciliation that finds nothing: 2 count probes a month.
PROBES_PER_MONTH = 2

Truth = dict[str, dict[int, bool]]
"""Per ISO day: record id -> hasAttended."""


@dataclass
class Run:
    """One reconcile or extraction, unpaced, and what it cost."""

    label: str
    summary: dict[str, Any]
    wall: float
    cpu: float
    #: The sandbox's own counters for the run: every request, and the count probes (limit=0).
    served: int
    probes: int

    @property
    def requests(self) -> int:
        return int(self.summary["requests"])

    @property
    def paced_seconds(self) -> float:
        """Wall time at 50 requests/min, modelled from the exact request count."""
        return max(self.requests - 1, 0) * PACED_INTERVAL + self.wall

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "count_probes": self.probes,
            "check_requests": self.summary.get("check_requests"),
            "local_work_seconds": round(self.wall, 3),
            "cpu_seconds": round(self.cpu, 3),
            "paced_seconds_modelled": round(self.paced_seconds, 1),
            "changed_days": self.summary.get("changed_days"),
            "re_extracted": self.summary.get("re_extracted"),
            "records": self.summary.get("records", self.summary.get("records_rewritten")),
        }


class Tenant:
    """The sandbox, a client per run, the output, and the truth the checks compare with."""

    def __init__(self, sandbox: BenchSandbox, lake: Path) -> None:
        from airflow.sdk import ObjectStoragePath

        # Imported here, not inside the timed calls: a module's import is not the run's work.
        import airflow_provider_lucca.extraction.realized_trainings
        import airflow_provider_lucca.extraction.reconcile  # noqa: F401

        self.sandbox = sandbox
        self.lake = lake
        self.output = ObjectStoragePath(lake.as_uri())
        self.log = logging.getLogger("bench.reconcile")
        self.truth = _generated_truth()

    def run(self, label: str, call: Callable[[Any], dict[str, Any]]) -> Run:
        """``call(client)`` with a new unpaced client, timed; its requests checked against the
        sandbox's own counter and log (every answer a 200: no retry hides in the count)."""
        from airflow_provider_lucca.client import LuccaClient
        from airflow_provider_lucca.client.config import ClientConfig

        config = ClientConfig(
            base_url=self.sandbox.url,
            api_key=SANDBOX_KEY,
            requests_per_minute=0,
            page_size=PAGE_SIZE,
        )
        client = LuccaClient(config, logger=self.log)
        self.sandbox.reset_stats()
        cpu = time.process_time()
        began = time.perf_counter()
        summary = call(client)
        wall = time.perf_counter() - began
        cpu = time.process_time() - cpu
        client.close()
        stats = self.sandbox.stats()
        entries = self.sandbox.process.request_log()["requests"]
        probes = sum(1 for entry in entries if "limit=0" in entry["query"].split("&"))
        run = Run(label, dict(summary), wall, cpu, int(stats["requests"]), probes)
        _check(
            run.served == run.requests == client.stats.requests == len(entries),
            f"{label}: the run reports {run.requests} requests, the client counted "
            f"{client.stats.requests}, the sandbox served {run.served} ({len(entries)} logged)",
        )
        _check(
            stats["by_status"] == {"200": run.served},
            f"{label}: every answer should be a 200, the sandbox answered {stats['by_status']}",
        )
        return run

    def extract(self, client: Any) -> dict[str, Any]:
        from airflow_provider_lucca.extraction.realized_trainings import (
            ExtractionRequest,
            extract_realized_trainings,
        )
        from airflow_provider_lucca.extraction.window import DateWindow

        window = DateWindow(FIRST_DAY, LAST_DAY + timedelta(days=1))
        request = ExtractionRequest(window=window)
        return dict(extract_realized_trainings(client, request, self.output, log=self.log))

    def reconcile(self, client: Any) -> dict[str, Any]:
        from airflow_provider_lucca.extraction.reconcile import (
            ReconcileRequest,
            reconcile_realized_trainings,
        )

        summary = reconcile_realized_trainings(
            client, ReconcileRequest(), self.output, log=self.log
        )
        return dict(summary)

    # -- the checks

    def files(self) -> dict[str, tuple[int, int, str]]:
        """Every file of the output: size, mtime and sha256 prefix, to prove what was not
        written."""
        import hashlib

        return {
            str(path.relative_to(self.lake)): (
                path.stat().st_size,
                path.stat().st_mtime_ns,
                hashlib.sha256(path.read_bytes()).hexdigest()[:16],
            )
            for path in sorted(self.lake.rglob("*"))
            if path.is_file()
        }

    def committed(self) -> Truth:
        """What the output's manifests commit: per day, record id -> hasAttended."""
        days: Truth = {}
        for manifest_path in sorted(self.lake.glob("session_end_on=*/_manifest.json")):
            manifest = json.loads(manifest_path.read_text())
            records: dict[int, bool] = {}
            for entry in manifest["files"]:
                data = (manifest_path.parent / entry["name"]).read_bytes()
                if entry["name"].endswith(".gz"):
                    data = gzip.decompress(data)
                for line in data.splitlines():
                    if line.strip():
                        record = json.loads(line)
                        records[int(record["id"])] = record.get("hasAttended") is True
            if records:
                days[manifest["partition"]["session_end_on"]] = records
        return days

    def apply(self, changes: list[dict[str, Any]]) -> None:
        """Update the truth with the changes the sandbox reports it made."""
        for change in changes:
            day = self.truth.setdefault(change["sessionEndsOn"], {})
            if change["kind"] == "delete":
                del day[int(change["id"])]
            else:
                day[int(change["id"])] = bool(change["hasAttended"])
        self.truth = {day: records for day, records in self.truth.items() if records}

    def check_exact(self, label: str) -> None:
        committed = self.committed()
        wrong = sorted(
            day
            for day in set(committed) | set(self.truth)
            if committed.get(day) != self.truth.get(day)
        )
        _check(
            not wrong,
            f"{label}: {len(wrong)} day(s) differ from the sandbox's truth, e.g. {wrong[:5]}",
        )


def _generated_truth() -> Truth:
    from lucca_sandbox.data import generate_records

    truth: Truth = {}
    for record in generate_records(DATASET_SEED, RECORDS, FIRST_DAY, LAST_DAY):
        truth.setdefault(record["sessionEndsOn"], {})[int(record["id"])] = (
            record.get("hasAttended") is True
        )
    return truth


def _check(condition: bool, message: str) -> None:
    """Fail the scenario loudly (bench/run.py reports it CRASHED and exits 1)."""
    if not condition:
        raise AssertionError(message)


def _check_one_day(
    tenant: Tenant,
    run: Run,
    day: date,
    delta: int,
    before: dict[str, tuple[int, int, str]],
) -> None:
    """The run found exactly ``day``, re-extracted only it, and left every other file alone."""
    label, summary = run.label, run.summary
    changed = summary["changed_days"]
    _check(
        [change["day"] for change in changed] == [day.isoformat()],
        f"{label}: expected exactly {day} to differ, reconcile found {changed}",
    )
    change = changed[0]
    _check(
        change["lucca"]["records"] - change["committed"]["records"] == delta
        and change["records_now"] == len(tenant.truth.get(day.isoformat(), {})),
        f"{label}: {day}: expected {delta:+d} record(s) and the truth's count, got {change}",
    )
    following = (day + timedelta(days=1)).isoformat()
    _check(
        summary["re_extracted"] == [{"from": day.isoformat(), "until": following}],
        f"{label}: only {day} should be re-extracted, got {summary['re_extracted']}",
    )
    after = tenant.files()
    partition = f"session_end_on={day.isoformat()}/"
    touched = sorted(
        path
        for path in set(before) | set(after)
        if before.get(path) != after.get(path) and not path.startswith(partition)
    )
    _check(not touched, f"{label}: files outside {partition} changed: {touched[:5]}")
    _check(
        any(
            before.get(path) != after.get(path)
            for path in set(before) | set(after)
            if path.startswith(partition)
        ),
        f"{label}: {partition} was not rewritten",
    )
    tenant.check_exact(label)


def _one_record_on(tenant: Tenant, day: date) -> int:
    ids = sorted(tenant.truth.get(day.isoformat(), {}))
    _check(bool(ids), f"the dataset has no record on {day} to delete")
    return ids[len(ids) // 2]


# --------------------------------------------------------------------------- the scenario


def reconcile(results_dir: Path | None = None) -> ScenarioResult:
    """Load 3 years, then (a) reconcile unchanged, (b) after a late import, (c) after a deletion,
    (d) re-extract everything; rows, checks, and reconcile.{md,png} in ``results_dir``."""
    began = time.perf_counter()
    result = ScenarioResult(NAME)
    with (
        BenchSandbox(RECORDS, FIRST_DAY, LAST_DAY) as sandbox,
        scratch_dir("reconcile") as base,
    ):
        tenant = Tenant(sandbox, base / "lake")
        load = tenant.run("history load", tenant.extract)
        tenant.check_exact("history load")
        print(
            f"    sandbox up and {load.summary['records']:,} records loaded in "
            f"{time.perf_counter() - began:.0f} s ({load.requests} requests)",
            flush=True,
        )

        before = tenant.files()
        unchanged = tenant.run("(a) no change", tenant.reconcile)
        _check(
            unchanged.summary["changed_days"] == [] and unchanged.summary["re_extracted"] == [],
            f"(a) no change: reconcile found {unchanged.summary['changed_days']}",
        )
        _check(tenant.files() == before, "(a) no change: reconcile wrote to the output")

        before = tenant.files()
        changes = sandbox.process.mutate(
            seed=MUTATION_SEED,
            inserts=1,
            **{"from": IMPORT_DAY.isoformat()},
            until=(IMPORT_DAY + timedelta(days=1)).isoformat(),
        )
        _check(
            [(c["kind"], c["sessionEndsOn"]) for c in changes]
            == [("insert", IMPORT_DAY.isoformat())],
            f"the sandbox's late import: {changes}",
        )
        tenant.apply(changes)
        imported = tenant.run("(b) one late import", tenant.reconcile)
        _check_one_day(tenant, imported, IMPORT_DAY, +1, before)

        before = tenant.files()
        changes = sandbox.process.mutate(delete_ids=[_one_record_on(tenant, DELETE_DAY)])
        _check(
            [(c["kind"], c["sessionEndsOn"]) for c in changes]
            == [("delete", DELETE_DAY.isoformat())],
            f"the sandbox's deletion: {changes}",
        )
        tenant.apply(changes)
        deleted = tenant.run("(c) one deletion", tenant.reconcile)
        _check_one_day(tenant, deleted, DELETE_DAY, -1, before)

        reconciled = part_checksums(tenant.lake)
        full = tenant.run("(d) full re-extraction", tenant.extract)
        tenant.check_exact("(d) full re-extraction")
        _check(
            part_checksums(tenant.lake) == reconciled,
            "the reconciled dataset is not byte-identical to a full re-extraction",
        )
        records = sum(len(day) for day in tenant.truth.values())
    runs = [unchanged, imported, deleted, full]
    _rows(result, runs, records)
    result.data = _data(runs, load, records)
    result.seconds = time.perf_counter() - began
    if results_dir is not None:
        write_results(result, results_dir)
    return result


def _months() -> int:
    return (LAST_DAY.year - FIRST_DAY.year) * 12 + LAST_DAY.month - FIRST_DAY.month + 1


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _cost(run: Run) -> str:
    return (
        f"{fmt_int(run.requests)} requests: {_minutes(run.paced_seconds)} at 50/min, modelled "
        f"from the exact request count ({max(run.requests - 1, 0)} x 1.2 s + "
        f"{run.wall:.2f} s measured local work)"
    )


def _breakdown(run: Run) -> str:
    check = int(run.summary["check_requests"])
    return (
        f"{run.probes} count probes + {check - run.probes} read(s) of a small window + "
        f"{run.requests - check} re-extraction request(s)"
    )


def _rows(result: ScenarioResult, runs: list[Run], records: int) -> None:
    unchanged, imported, deleted, full = runs
    budget = PROBES_PER_MONTH * _months()
    result.row(
        f"(a) reconcile {_months()} months, nothing changed",
        f"{_cost(unchanged)}; {unchanged.probes} count probes, nothing written",
        f"<= {budget} requests ({PROBES_PER_MONTH} a month)",
        unchanged.requests <= budget,
    )
    for run, day, what in (
        (imported, IMPORT_DAY, "one late import"),
        (deleted, DELETE_DAY, "one deletion"),
    ):
        extra = run.requests - unchanged.requests
        result.row(
            f"({run.label[1]}) reconcile after {what} on {day}",
            f"{_cost(run)}; {extra:+d} vs (a): {_breakdown(run)}",
            "only that day re-extracted, the others untouched, records exact",
            True,  # every part of it is asserted above: a failure crashes the scenario
        )
    result.row(
        f"(d) full re-extraction of the 3 years ({fmt_int(records)} records)",
        f"{_cost(full)}",
        f"= ceil(records/100) = {fmt_int(ideal_requests(records))}",
        full.requests == ideal_requests(records),
    )
    result.row(
        "full re-extraction / reconcile, requests",
        f"{full.requests / unchanged.requests:.1f}x (no change), "
        f"{full.requests / imported.requests:.1f}x (late import), "
        f"{full.requests / deleted.requests:.1f}x (deletion); the reconciled dataset is "
        "byte-identical to the re-extraction",
    )


def _data(runs: list[Run], load: Run, records: int) -> dict[str, Any]:
    return {
        "records": records,
        "period": PERIOD,
        "months": _months(),
        "paced_interval_seconds": PACED_INTERVAL,
        "import_day": IMPORT_DAY.isoformat(),
        "delete_day": DELETE_DAY.isoformat(),
        "history_load": load.figures(),
        "runs": {run.label: run.figures() for run in runs},
    }


# --------------------------------------------------------------------------- reconcile.md, .png


def runs_table(data: dict[str, Any]) -> str:
    lines = [
        "| Run | Requests | of which count probes | Local work, measured unpaced (s) "
        "| Wall at 50 requests/min, modelled (min) | Days re-extracted |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, figures in data["runs"].items():
        days = figures["re_extracted"]
        re_extracted = (
            "all" if days is None else ", ".join(window["from"] for window in days) or "none"
        )
        lines.append(
            f"| {label} | {figures['requests']:,} | {figures['count_probes']} "
            f"| {figures['local_work_seconds']:.2f} "
            f"| {figures['paced_seconds_modelled'] / 60:.1f} | {re_extracted} |"
        )
    return "\n".join(lines)


NOTES = [
    "One sandbox tenant (`lucca-sandbox` in its own process on 127.0.0.1, seed 42) holds the "
    "records; the output is jsonl.gz daily partitions written through "
    "`ObjectStoragePath(file://...)` in the bench's scratch directory. Each run calls the "
    "extraction code the operators call (`reconcile_realized_trainings` with "
    "`ReconcileRequest()`: the whole committed range; `extract_realized_trainings` over the "
    "3 years) with a new `LuccaClient`, pages of 100.",
    "Wall time at 50 requests/min is modelled from the exact request count, not waited for: the "
    "runs are unpaced, and the client's pacer starts requests 60/50 = 1.2 s apart, so the "
    "model is (requests - 1) x 1.2 s + the run's measured local work (its whole unpaced wall "
    "time: the client, the sandbox's answers on loopback, the commit). Local work done between "
    "requests would overlap the 1.2 s gaps in a paced run, so the model is an upper bound. "
    "Scenario 2 measures the pacer itself against a limit (within 2% of the ideal).",
    "Requests are the client's count, equal to the sandbox's own counter and request log for "
    "every run (the scenario fails otherwise), all answered 200; count probes are the logged "
    "requests with `limit=0` (`fields.root=count`).",
    "Checks (a failed one fails the scenario, and `make bench`): (a) writes nothing (every "
    "file of the output byte-identical, same mtime); after (b) and (c), exactly the mutated day "
    "is found and re-extracted, no file outside its partition changes, and every day's record "
    "ids and attendance equal the sandbox's truth (its generator plus the changes the mutation "
    "reported); the dataset after (c) is byte-identical, day by day, to the full re-extraction "
    "(d) that follows it.",
    "A reconciliation's cost does not grow with the records: with nothing changed it is 2 count "
    "probes a month of history whatever the tenant's size, where a re-extraction is "
    "ceil(records/100). A changed day adds the drill-down (two probes per halving of its month "
    "until a window fits in one page, which is read) and the day's own pages.",
]


def write_results(result: ScenarioResult, directory: Path) -> None:
    """``reconcile.md`` (the rows, the runs, notes) and ``reconcile.png`` in ``directory``."""
    from bench import report

    directory.mkdir(parents=True, exist_ok=True)
    plot_path = directory / "reconcile.png"
    plot(result.data, plot_path)
    info = report.machine()
    data = result.data
    text = "\n".join(
        [
            "# Benchmark scenario 8: reconcile 3 years of history (`make bench`, "
            "`bench/reconcile.py`)",
            "",
            f"- Date: {report.now_iso()}",
            f"- Machine: {info['nproc']} CPUs ({info['cpu']}), {info['ram_gb']} GB RAM, "
            f"Python {info['python']}; load average at the end {info['load_average_at_end']} "
            "(shared machine)",
            f"- Commit: {report.git_commit()}",
            f"- Scenario runtime: {result.seconds:.0f} s",
            "- Command: `.venv/bin/python bench/run.py --only 8`",
            "",
            report.markdown_table([result]),
            "",
            f"Runs ({data['records']:,} records over {PERIOD}, {data['months']} months, pages of "
            f"{PAGE_SIZE}; wall time at 50 requests/min modelled from the exact request count):",
            "",
            runs_table(data),
            "",
            "Notes:",
            "",
            *(f"- {note}" for note in NOTES),
            "",
            f"Plot: `{plot_path.name}`.",
            "",
        ]
    )
    (directory / "reconcile.md").write_text(text)


def plot(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = {
        "(a) no change": "reconcile:\nno change",
        "(b) one late import": "reconcile:\none late import",
        "(c) one deletion": "reconcile:\none deletion",
        "(d) full re-extraction": "full\nre-extraction",
    }
    runs = data["runs"]
    names = [labels[label] for label in runs]
    colors = ["tab:green", "tab:green", "tab:green", "tab:red"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    requests = [figures["requests"] for figures in runs.values()]
    bars = left.bar(names, requests, color=colors)
    left.bar_label(bars, labels=[f"{value:,}" for value in requests], fontsize=9)
    left.axhline(
        PROBES_PER_MONTH * data["months"],
        color="grey",
        linewidth=0.8,
        linestyle=":",
        label=f"budget with no change: {PROBES_PER_MONTH} a month",
    )
    left.set_ylabel("requests (exact count)")
    left.set_title(f"Verify {data['period']}: {data['records']:,} records")
    left.set_ylim(0, max(requests) * 1.15)
    left.legend(loc="upper left")
    left.grid(alpha=0.3, axis="y")

    minutes = [figures["paced_seconds_modelled"] / 60 for figures in runs.values()]
    bars = right.bar(names, minutes, color=colors)
    right.bar_label(bars, labels=[f"{value:.1f} min" for value in minutes], fontsize=9)
    right.set_ylabel("minutes of the tenant's budget")
    right.set_title("Wall time at 50 requests/min\n(modelled from the exact request count)")
    right.set_ylim(0, max(minutes) * 1.15)
    right.grid(alpha=0.3, axis="y")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    plt.close(figure)
