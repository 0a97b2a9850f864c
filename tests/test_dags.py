"""DAG integrity: the example DAGs import cleanly and are wired the way the README says."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk import CronDataIntervalTimetable

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
def test_extract_verify_derive_chain_in_the_lucca_pool(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags[dag_id]
    extract, verify, derive = (dag.get_task(task_id) for task_id in ("extract", "verify", "derive"))
    assert extract.downstream_task_ids == {"verify"}
    assert verify.downstream_task_ids == {"derive"}
    assert derive.downstream_task_ids == set()
    assert extract.pool == verify.pool == derive.pool == "lucca_api"
    assert [outlet.name for outlet in extract.outlets] == ["lucca_realized_trainings"]


def test_history_dag_is_manual_with_date_params(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_realized_trainings_history"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # schedule=None: manual runs only
    assert set(dag.params.keys()) == {"from", "until"}
    extract = dag.get_task("extract")
    assert extract.session_end_from == "{{ params['from'] }}"
    assert extract.session_end_until == "{{ params['until'] }}"


def test_maintenance_dag_sweeps_the_dataset_weekly_in_the_pool(dagbag: DagBag) -> None:
    dag = dagbag.dags["lucca_realized_trainings_maintenance"]
    assert dag.catchup is False
    sweep = dag.get_task("sweep_unlisted_files")
    assert sweep.pool == "lucca_api"
    assert sweep.older_than_hours == 24
    daily = dagbag.dags["lucca_realized_trainings_daily"].get_task("extract")
    assert sweep.output_path == daily.output_path
