"""DAG integrity: the example DAGs import cleanly and are wired the way the README says."""

from __future__ import annotations

import json
import sys
import warnings
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import DAG, CronDataIntervalTimetable, ObjectStoragePath

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import lucca_conn_json

DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    # Airflow puts the DAGs folder on sys.path at start-up: that is how the DAGs import
    # lucca_common (settings), lucca_verify and lucca_training_hours_report (tasks).
    sys.path.insert(0, str(DAGS))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = DagBag(dag_folder=str(DAGS))
    ours = [
        w
        for w in caught
        if str(DAGS) in str(w.filename) or "airflow_provider_lucca" in str(w.filename)
    ]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    return bag


def test_every_dag_imports_without_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {
        "lucca_realized_trainings_daily",
        "lucca_realized_trainings_history",
        "lucca_realized_trainings_maintenance",
        "lucca_realized_trainings_reconcile",
        "lucca_training_hours_refresh",
    }


def test_daily_dag_uses_a_data_interval_timetable_in_paris(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_realized_trainings_daily"]
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert str(dag.timezone.name) == "Europe/Paris"
    assert dag.catchup is True
    assert dag.max_active_runs == 1


@pytest.mark.parametrize(
    "dag_id", ["lucca_realized_trainings_daily", "lucca_realized_trainings_history"]
)
def test_extract_verify_derive_chain_mapped_over_the_tenants(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    tenants, summary = dag.get_task("tenants"), dag.get_task("fleet_summary")
    extract, verify, derive = (
        dag.get_task(f"tenant.{task_id}") for task_id in ("extract", "verify", "derive")
    )
    assert tenants.downstream_task_ids == {"tenant.extract", "fleet_summary"}
    assert extract.downstream_task_ids == {"tenant.verify"}
    assert verify.downstream_task_ids == {"tenant.derive"}
    assert derive.downstream_task_ids == {"fleet_summary"}
    assert summary.trigger_rule == "all_done"
    # Only the extracts send requests: the pool's slots are how many run at once.
    assert extract.pool == "lucca_api"
    assert verify.pool == derive.pool == "default_pool"
    assert [outlet.name for outlet in extract.outlets] == ["lucca_realized_trainings"]
    assert extract.map_index_template == "{{ task.tenant or task.lucca_conn_id }}"


def test_history_dag_is_manual_with_date_params(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_realized_trainings_history"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual runs only
    assert set(dag.params.keys()) == {"from", "until", "tenants"}
    assert dag.params["tenants"] == []
    extract = dag.get_task("tenant.extract")
    assert extract.session_end_from == "{{ params['from'] }}"
    assert extract.session_end_until == "{{ params['until'] }}"


def test_reconcile_dag_checks_every_tenant_weekly_in_the_pool(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_realized_trainings_reconcile"]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert type(dag.timetable).__name__ == "CronTriggerTimetable"
    assert (dag.timetable.expression, str(dag.timetable.timezone)) == ("0 3 * * 0", "Europe/Paris")
    assert dag.get_task("tenants").downstream_task_ids == {"tenant.reconcile", "fleet_summary"}
    reconcile = dag.get_task("tenant.reconcile")
    assert type(reconcile).__name__ == "RealizedTrainingsReconcileOperator"
    # The reports of the months whose days it rewrote are computed again.
    assert reconcile.downstream_task_ids == {"tenant.rewritten_days"}
    assert dag.get_task("tenant.rewritten_days").downstream_task_ids == {"tenant.derive"}
    assert dag.get_task("tenant.derive").downstream_task_ids == {"fleet_summary"}
    assert reconcile.pool == "lucca_api"
    assert reconcile.map_index_template == "{{ task.tenant or task.lucca_conn_id }}"
    daily = dagbag.dags["lucca_realized_trainings_daily"].get_task("tenant.extract")
    assert (reconcile.output_path, reconcile.file_format) == (daily.output_path, daily.file_format)
    assert [outlet.name for outlet in reconcile.outlets] == ["lucca_realized_trainings"]


def test_maintenance_dag_sweeps_the_dataset_weekly_in_the_pool(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_realized_trainings_maintenance"]
    assert dag.catchup is False
    sweep = dag.get_task("sweep_unlisted_files")
    assert sweep.pool == "lucca_api"
    assert sweep.older_than_hours == 24
    daily = dagbag.dags["lucca_realized_trainings_daily"].get_task("tenant.extract")
    assert sweep.output_path == daily.output_path


def test_refresh_dag_is_scheduled_on_the_dataset_the_extracts_update(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_training_hours_refresh"]
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assets = dag.timetable.asset_condition.objects
    extract = dagbag.dags["lucca_realized_trainings_daily"].get_task("tenant.extract")
    # The very Asset the extracts and reconciliations have as outlet: name and URI.
    assert [(asset.name, asset.uri) for asset in assets] == [
        (outlet.name, outlet.uri) for outlet in extract.outlets
    ]
    assert dag.catchup is False
    assert dag.max_active_runs == 1
    assert set(dag.task_ids) == {"refresh"}
    assert dag.get_task("refresh").pool == "default_pool"  # no request to Lucca


def test_the_refresh_takes_the_months_each_tenant_touched(settings: Callable[..., None]) -> None:
    settings()
    from lucca_training_hours_refresh import touched_months

    month = {"days": 1, "records": 3}
    extras: list[dict[str, Any]] = [
        {"tenant": None, "file_format": "jsonl", "months": {"2025-05": month, "2025-06": month}},
        {"tenant": "acme", "file_format": "jsonl", "months": {"2025-06": month}},
        {"tenant": None, "file_format": "jsonl", "changed_days": [], "months": {}},  # nothing
        {"note": "an event created by hand, without what changed"},
    ]
    assert touched_months(extras) == {
        (None, "jsonl"): {"2025-05", "2025-06"},
        ("acme", "jsonl"): {"2025-06"},
    }
    assert touched_months(extras[2:]) == {}  # the run is skipped


# -- LUCCA_FILE_FORMAT: the format and the target of the extracts, read when the DAGs are parsed

#: The DAGs with an extract task.
EXTRACT_DAGS = ("lucca_realized_trainings_daily", "lucca_realized_trainings_history")
DAG_IDS = (
    *EXTRACT_DAGS,
    "lucca_realized_trainings_maintenance",
    "lucca_realized_trainings_reconcile",
    "lucca_training_hours_refresh",
)


def parse(settings: Callable[..., None], **env: str) -> DagBag:
    settings(**env)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return bag


@pytest.mark.parametrize("file_format", ["jsonl", "parquet", "delta"])
def test_files_and_delta_formats_write_to_the_output_path(
    settings: Callable[..., None], tmp_path: Path, file_format: str
) -> None:
    root = (tmp_path / "lake").as_uri()
    bag = parse(settings, LUCCA_FILE_FORMAT=file_format, LUCCA_OUTPUT_PATH=root)
    for dag_id in EXTRACT_DAGS:
        extract = bag.dags[dag_id].get_task("tenant.extract")
        assert extract.file_format == file_format
        assert extract.output_path == root
        assert extract.iceberg_table is None
        assert [(asset.name, asset.uri) for asset in extract.outlets] == [
            ("lucca_realized_trainings", root)
        ]


def test_iceberg_format_writes_to_the_table_of_the_catalog_connection(
    settings: Callable[..., None],
) -> None:
    bag = parse(
        settings,
        LUCCA_FILE_FORMAT="iceberg",
        LUCCA_ICEBERG_TABLE="lake.hr.realized_trainings",
        LUCCA_ICEBERG_CONN_ID="iceberg_lake",
    )
    for dag_id in EXTRACT_DAGS:
        extract = bag.dags[dag_id].get_task("tenant.extract")
        assert extract.file_format == "iceberg"
        assert extract.output_path is None  # the operator refuses one with iceberg
        assert (extract.iceberg_table, extract.iceberg_conn_id) == (
            "lake.hr.realized_trainings",
            "iceberg_lake",
        )
        assert [(asset.name, asset.uri) for asset in extract.outlets] == [
            ("lucca_realized_trainings", "iceberg://iceberg_lake/lake/hr/realized_trainings")
        ]


def test_iceberg_defaults(settings: Callable[..., None]) -> None:
    bag = parse(settings, LUCCA_FILE_FORMAT="iceberg")
    extract = bag.dags["lucca_realized_trainings_daily"].get_task("tenant.extract")
    assert (extract.iceberg_table, extract.iceberg_conn_id) == (
        "lucca.realized_trainings",
        "iceberg_default",
    )


def test_the_default_format_is_jsonl_files(settings: Callable[..., None]) -> None:
    bag = parse(settings)
    extract = bag.dags["lucca_realized_trainings_daily"].get_task("tenant.extract")
    assert extract.file_format == "jsonl"
    assert (
        extract.output_path
        == (Path(__file__).resolve().parents[1] / "data" / "lucca" / "realized_trainings").as_uri()
    )


@pytest.mark.parametrize("value", ["csv", "Delta Lake", "json"])
def test_an_unknown_format_fails_every_dag_at_parse_time_naming_the_setting(
    settings: Callable[..., None], value: str
) -> None:
    settings(LUCCA_FILE_FORMAT=value)
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.dags == {}
    dag_files = {str(DAGS / f"{dag_id}.py") for dag_id in DAG_IDS}
    assert dag_files <= set(bag.import_errors)
    for error in bag.import_errors.values():
        assert f"Invalid LUCCA_FILE_FORMAT={value!r}" in error
        assert "expected one of jsonl, parquet, delta, iceberg" in error


def test_the_retry_delay_setting_reaches_the_tasks_and_a_typo_fails_at_parse_time(
    settings: Callable[..., None],
) -> None:
    from datetime import timedelta

    daily, reconcile = "lucca_realized_trainings_daily", "lucca_realized_trainings_reconcile"
    bag = parse(settings)
    assert bag.dags[daily].default_args["retry_delay"] == timedelta(minutes=5)
    assert bag.dags[reconcile].default_args["retry_delay"] == timedelta(minutes=10)
    bag = parse(settings, LUCCA_RETRY_DELAY_SECONDS="5")
    for dag_id in (daily, reconcile):
        assert bag.dags[dag_id].default_args["retry_delay"] == timedelta(seconds=5)
    settings(LUCCA_RETRY_DELAY_SECONDS="5m")
    errors = DagBag(dag_folder=str(DAGS)).import_errors
    assert any("Invalid LUCCA_RETRY_DELAY_SECONDS='5m'" in error for error in errors.values())


# -- derive and verify read the table when the format is a table

#: Runs as the DAGs make them: a history load, then daily runs whose 7-day lookback overlaps it;
#: 2025-12-21 and 22 are never extracted; the last run ends on days the sandbox (2025 only) has no
#: record for: extracted, and empty.
RUNS = [
    {"session_end_from": "2025-11-01", "session_end_until": "2025-12-20"},
    {"session_end_from": "2025-12-20", "session_end_until": "2025-12-21", "lookback_days": 7},
    {"session_end_from": "2025-12-30", "session_end_until": "2026-01-03", "lookback_days": 7},
]
MONTHS = ("2025-11", "2025-12", "2026-01")


def run_example_tasks(settings: Callable[..., None], **env: str) -> tuple[dict[str, bytes], Any]:
    """Every run of :data:`RUNS` through an extract configured as the DAGs configure it, then
    the DAGs' verify and derive; returns the reports by month, and lucca_common."""
    settings(**env)
    import lucca_common
    import lucca_training_hours_report
    import lucca_verify

    written: dict[str, str] = {}
    with DAG("lucca_formats", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        for number, window in enumerate(RUNS):
            extract = RealizedTrainingsOperator(
                task_id=f"extract_{number}", **lucca_common.OUTPUT_TARGET, **window
            )
            summary = extract.execute({"run_id": f"manual__{number}"})
            verified = lucca_verify.verify.function(summary)
            for path in lucca_training_hours_report.derive.function(verified)["reports"]:
                written[path.rsplit("month=", 1)[1][:7]] = path
    assert sorted(written) == list(MONTHS)
    return {month: ObjectStoragePath(path).read_bytes() for month, path in written.items()}, (
        lucca_common
    )


def iceberg_conn_json(home: Path) -> str:
    """``iceberg_default``: a SQLite catalog with its warehouse on local disk, under ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    return json.dumps(
        {
            "conn_type": "generic",
            "extra": {
                "type": "sql",
                "uri": f"sqlite:///{home / 'catalog.db'}",
                "warehouse": (home / "warehouse").as_uri(),
            },
        }
    )


def extracted_days() -> set[str]:
    days = set()
    for run in RUNS:
        day = date.fromisoformat(run["session_end_from"]) - timedelta(run.get("lookback_days", 0))
        while day < date.fromisoformat(run["session_end_until"]):
            days.add(day.isoformat())
            day += timedelta(1)
    return days


def expected_report(records: list[dict[str, Any]], month: str) -> bytes:
    """The report of ``month`` computed straight from the sandbox's records."""
    extracted = {day for day in extracted_days() if day.startswith(month)}
    days_extracted = len(extracted)
    trainings: dict[int, int] = defaultdict(int)
    hours: dict[int, Decimal] = defaultdict(Decimal)
    for record in records:
        if record["sessionEndsOn"] in extracted:
            trainings[record["ownerId"]] += 1
            if record["hasAttended"]:
                hours[record["ownerId"]] += Decimal(str(record["durationInHours"]))
    lines = ["month,owner_id,realized_trainings,attended_hours,days_extracted"]
    lines += [
        f"{month},{owner},{trainings[owner]},{hours[owner]:.2f},{days_extracted}"
        for owner in sorted(trainings)
    ]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.slow
def test_the_report_is_the_same_in_every_format(
    settings: Callable[..., None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # 300 records over 2025: days without records in every month, which a table does not hold.
    sandbox = SandboxServer(SandboxConfig(records=300)).start()
    monkeypatch.setenv("AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(sandbox.url))
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", iceberg_conn_json(tmp_path / "catalog"))
    try:
        reports = {
            file_format: run_example_tasks(
                settings,
                LUCCA_FILE_FORMAT=file_format,
                LUCCA_OUTPUT_PATH=(tmp_path / file_format).as_uri(),
            )[0]
            for file_format in ("jsonl", "parquet", "delta", "iceberg")
        }
    finally:
        sandbox.stop()

    truth = {month: expected_report(sandbox.records, month) for month in MONTHS}
    with_records = {record["sessionEndsOn"] for record in sandbox.records}
    assert len(extracted_days() - with_records) > 20  # extracted, and empty
    assert truth["2025-11"].endswith(b",30\n")
    assert truth["2025-12"].endswith(b",29\n")  # not the 21st and 22nd
    assert truth["2026-01"].count(b"\n") == 1  # a header, no row: 2 empty days extracted
    for file_format, report in reports.items():
        assert report == truth, file_format


@pytest.mark.parametrize("file_format", ["delta", pytest.param("iceberg", marks=pytest.mark.slow)])
def test_verify_checks_the_table_at_the_version_the_run_committed(
    settings: Callable[..., None],
    lucca_conn: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    file_format: str,
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", iceberg_conn_json(tmp_path / "catalog"))
    settings(LUCCA_FILE_FORMAT=file_format, LUCCA_OUTPUT_PATH=(tmp_path / "table").as_uri())
    import lucca_common
    import lucca_verify

    with DAG("lucca_verify_table", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        extract = RealizedTrainingsOperator(
            task_id="extract", **lucca_common.OUTPUT_TARGET, **RUNS[0]
        )
        first = extract.execute({"run_id": "manual__first"})
        # A later run replaces the same days with fewer records: the first run's version still
        # verifies, and so does the later one's.
        attended = RealizedTrainingsOperator(
            task_id="attended", **lucca_common.OUTPUT_TARGET, **RUNS[0], has_attended=True
        )
        second = attended.execute({"run_id": "manual__second"})
    assert second["records"] < first["records"]
    assert lucca_verify.verify.function(first) == first
    assert lucca_verify.verify.function(second) == second

    miscounted = {**first, "partitions": {**first["partitions"], "2025-11-03": 999}}
    with pytest.raises(ValueError, match=r"2025-11-03.*999"):
        lucca_verify.verify.function(miscounted)
    other_run = {**first, "run_token": "f" * 12}
    with pytest.raises(ValueError, match="is not the commit of run ffffffffffff"):
        lucca_verify.verify.function(other_run)
