"""Files and a Delta table under one root would destroy each other: refused before any request.

Both layouts use ``session_end_on=`` directories. Delta's vacuum deletes what its log does not
list (the files' parts and manifests); the files' sweep deletes what no manifest lists (every data
file of the table). A typo in ``output_path`` or ``file_format`` must fail, not clean up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG

from airflow_provider_lucca.client import LuccaConfigError
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.sweep import RealizedTrainingsSweepOperator
from lucca_sandbox import SandboxServer
from tests.helpers import tree

WINDOW = {"session_end_from": "2025-03-01", "session_end_until": "2025-03-08"}


def run(root: Path, file_format: str, **params: Any) -> dict[str, Any]:
    with DAG("lucca_layouts", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        op = RealizedTrainingsOperator(
            task_id=f"extract_{file_format}",
            output_path=f"file://{root}",
            file_format=file_format,
            **WINDOW,
            **params,
        )
    return dict(op.execute({"run_id": "manual__layouts"}))


def test_a_delta_table_is_not_created_over_a_files_dataset(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    root = tmp_path / "lake"
    run(root, "jsonl")
    before = tree(root)
    lucca_conn.reset_stats()

    with pytest.raises(LuccaConfigError, match=r"output_path=.*file_format='delta'.*not empty"):
        run(root, "delta")

    assert lucca_conn.stats()["requests"] == 0
    assert tree(root) == before


def test_files_are_not_written_into_a_delta_table(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    root = tmp_path / "table"
    summary = run(root, "delta")
    assert summary["file_format"] == "delta"
    assert summary["table_version"] == 0
    before = tree(root)
    lucca_conn.reset_stats()

    for file_format in ("jsonl", "parquet"):
        with pytest.raises(LuccaConfigError, match=r"holds a Delta table \(_delta_log\)"):
            run(root, file_format)

    assert lucca_conn.stats()["requests"] == 0
    assert tree(root) == before


def test_the_sweep_refuses_a_delta_table(lucca_conn: SandboxServer, tmp_path: Path) -> None:
    root = tmp_path / "table"
    run(root, "delta")
    before = tree(root)
    sweep = RealizedTrainingsSweepOperator(
        task_id="sweep", output_path=f"file://{root}", older_than_hours=0
    )

    with pytest.raises(LuccaConfigError, match=r"holds a Delta table"):
        sweep.execute({"run_id": "manual__sweep"})

    assert tree(root) == before


def test_a_new_delta_table_may_go_to_an_empty_or_missing_directory(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    (tmp_path / "empty").mkdir()
    assert run(tmp_path / "empty", "delta")["records"] > 0
    assert run(tmp_path / "missing" / "table", "delta")["records"] > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"file_format": "csv"}, r"file_format='csv'.*'jsonl', 'parquet', 'delta', 'iceberg'"),
        (
            {"file_format": "jsonl", "iceberg_table": "lucca.realized_trainings"},
            r"iceberg_table is only used with file_format='iceberg' \(not 'jsonl'\)",
        ),
        (
            {"file_format": "iceberg", "iceberg_table": "lucca.realized_trainings"},
            r"output_path is not used with file_format='iceberg'",
        ),
    ],
)
def test_format_and_target_mistakes_fail_when_the_dag_is_parsed(
    params: dict[str, Any], message: str
) -> None:
    with pytest.raises(LuccaConfigError, match=message):
        RealizedTrainingsOperator(task_id="extract", output_path="file:///data/lucca", **params)
