"""Table cases found by a red-team pass, each now a test: a commit racing into days that were
empty at its version, a table that is not this provider's, a dataset inside a Delta table."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from airflow_provider_lucca.client import LuccaConfigError
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY, client_for, tree

LOG = logging.getLogger("tests.table_edges")


def run(sandbox: SandboxServer, sink: DeltaSink, start: str, until: str) -> ExtractionSummary:
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(start), date.fromisoformat(until))
    )
    with client_for(sandbox.url, api_key=SANDBOX_KEY) as client:
        return extract_realized_trainings(client, request, sink, log=LOG)


def march_ids(root: Path) -> list[int]:
    rows = DeltaTable(str(root)).to_pyarrow_table(columns=["id", "session_end_on"]).to_pylist()
    return [
        row["id"] for row in rows if date(2025, 3, 1) <= row["session_end_on"] < date(2025, 4, 1)
    ]


def test_a_commit_into_days_another_run_filled_meanwhile_replaces_them(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """Run B read the table when March was empty; run A commits March; B commits March. delta-rs
    rebasing B saw no conflict (B removed no file) and kept both runs' rows."""
    root = tmp_path / "table"
    run(sandbox, DeltaSink(str(root)), "2025-01-01", "2025-02-01")
    sink = DeltaSink(str(root))
    opened = 0
    real_open = sink.open

    def open_then_let_another_run_commit() -> Any:
        nonlocal opened
        table = real_open()
        opened += 1
        if opened == 2:  # the open of B's commit (the first is its guard's)
            run(sandbox, DeltaSink(str(root)), "2025-03-01", "2025-04-01")
        return table

    sink.open = open_then_let_another_run_commit  # type: ignore[method-assign]
    summary = run(sandbox, sink, "2025-03-01", "2025-04-01")

    truth = sorted(
        r["id"] for r in sandbox.records if "2025-03-01" <= r["sessionEndsOn"] < "2025-04"
    )
    ids = march_ids(root)
    assert [id_ for id_, count in Counter(ids).items() if count > 1] == []
    assert sorted(ids) == truth
    assert summary["table_version"] == 2  # made again on A's version 1


@pytest.mark.parametrize("partitioned", [True, False])
def test_a_delta_table_that_is_not_the_providers_is_refused_before_any_request(
    sandbox: SandboxServer, tmp_path: Path, partitioned: bool
) -> None:
    root = tmp_path / "someone_elses"
    other = pa.table(
        {
            "id": pa.array([1, 2], pa.int64()),
            "department": ["HR", "IT"],
            "session_end_on": [date(2024, 5, 1), date(2025, 3, 5)],
        }
    )
    write_deltalake(str(root), other, partition_by=["session_end_on"] if partitioned else None)
    before = tree(root)
    sandbox.reset_stats()

    with pytest.raises(LuccaConfigError, match=r"output_path.*give the Lucca table a path"):
        run(sandbox, DeltaSink(str(root)), "2025-03-01", "2025-04-01")

    assert sandbox.stats()["requests"] == 0
    assert tree(root) == before


@pytest.mark.parametrize("file_format", ["delta", "jsonl"])
def test_an_output_path_inside_a_delta_table_is_refused(
    lucca_conn: SandboxServer, tmp_path: Path, file_format: str
) -> None:
    """The outer table's vacuum deletes every file its log does not list, under its whole root."""
    outer = tmp_path / "lake"
    run(lucca_conn, DeltaSink(str(outer)), "2025-03-01", "2025-04-01")
    lucca_conn.reset_stats()
    op = RealizedTrainingsOperator(
        task_id="nested",
        output_path=f"file://{outer}/session_end_on=2025-03-01/archive",
        file_format=file_format,
        session_end_from="2025-01-01",
        session_end_until="2025-02-01",
    )

    with pytest.raises(LuccaConfigError, match=r"inside the Delta table"):
        op.execute({"run_id": "manual__nested"})

    assert lucca_conn.stats()["requests"] == 0


class FakeTaskTimeout(BaseException):
    """What Airflow raises on ``execution_timeout`` or SIGTERM: not an ``Exception``."""


def test_a_timeout_right_after_the_commit_keeps_the_files_it_committed(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    root = tmp_path / "table"
    run(sandbox, DeltaSink(str(root)), "2025-01-01", "2025-02-01")
    sink = DeltaSink(str(root))
    real_commit = sink._commit

    def commit_then_time_out(*args: Any) -> int:
        real_commit(*args)
        raise FakeTaskTimeout()

    sink._commit = commit_then_time_out  # type: ignore[method-assign]
    with pytest.raises(FakeTaskTimeout):
        run(sandbox, sink, "2025-03-01", "2025-04-01")

    table = DeltaTable(str(root))
    assert table.version() == 1  # the commit landed: every file it lists must be there
    truth = sorted(
        r["id"] for r in sandbox.records if "2025-03-01" <= r["sessionEndsOn"] < "2025-04"
    )
    assert sorted(march_ids(root)) == truth


@pytest.mark.slow
def test_a_missing_bucket_fails_before_any_request_naming_output_path(
    lucca_conn: SandboxServer, s3_bucket: str
) -> None:
    op = RealizedTrainingsOperator(
        task_id="typo",
        output_path=f"s3://aws_local@{s3_bucket}-typo/lucca/realized_trainings",
        file_format="delta",
        session_end_from="2025-03-01",
        session_end_until="2025-03-08",
    )
    lucca_conn.reset_stats()

    with pytest.raises(LuccaConfigError, match=r"output_path.*cannot be read or written"):
        op.execute({"run_id": "manual__typo"})

    assert lucca_conn.stats()["requests"] == 0


@pytest.mark.slow
@pytest.mark.parametrize(("fault", "retryable"), [("drop", True), ("deny", False)])
def test_a_store_down_is_retried_and_a_refused_one_fails_at_once(
    moto_s3: str, s3_bucket: str, fault: str, retryable: bool
) -> None:
    """Opening a Delta table whose store drops every connection (an outage outlasting delta-rs's
    own retries) fails the task retryably; a store refusing the credentials fails it at once,
    as a setting to fix. Both before any request to Lucca."""
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_lucca.extraction.errors import LuccaStorageError
    from airflow_provider_lucca.operators.failures import failing_at_once_when_permanent
    from tests.helpers import moto_options
    from tests.s3_fault_proxy import S3FaultProxy

    def options(endpoint: str) -> dict[str, str]:
        # delta-rs's own retries kept short: an outage of minutes outlasts the defaults alike.
        return {**moto_options(endpoint), "max_retries": "1", "retry_timeout": "2s"}

    uri = f"s3://{s3_bucket}/lucca/realized_trainings"
    table = DeltaSink(uri, options(moto_s3))
    write_deltalake(
        uri,
        table.schema.arrow.empty_table(),
        partition_by=table.partition_by,
        storage_options=options(moto_s3),
    )
    with S3FaultProxy(moto_s3) as proxy:
        proxy.rule = lambda method, path: fault
        sink = DeltaSink(uri, options(proxy.url))
        with (
            pytest.raises((LuccaStorageError, LuccaConfigError)) as info,
            failing_at_once_when_permanent(),
        ):
            sink.guard("token", None, logging.getLogger("test"))
        proxy.rule = lambda method, path: None
        sink.guard("token", None, logging.getLogger("test"))  # the store back: it passes
    if retryable:
        assert isinstance(info.value, LuccaStorageError), info.value
        assert info.value.phase == "open"
        assert not isinstance(info.value, AirflowFailException)
    else:
        assert isinstance(info.value, LuccaConfigError), info.value
        assert isinstance(info.value, AirflowFailException)


def _chained(outer: Exception, inner: BaseException) -> Exception:
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (_chained(RuntimeError("load failed"), ConnectionRefusedError(111, "refused")), True),
        (
            OSError("Generic S3 error: Error performing GET http://s3/x - 503 Service Unavailable"),
            True,
        ),
        (OSError("Generic S3 error: error sending request for url (http://s3/x): timed out"), True),
        (RuntimeError("ServiceUnavailableError: Unavailable: restarting"), True),
        (OSError("Generic S3 error: 404 Not Found <Code>NoSuchBucket</Code>"), False),
        (OSError("Generic S3 error: 403 Forbidden <Code>InvalidAccessKeyId</Code>"), False),
        (ValueError("Invalid catalog type: 'sqll'"), False),
        (ModuleNotFoundError("No module named 'psycopg2'"), False),
        # A refusal wins over an outage word: the setting is what the message must name.
        (OSError("connection refused by policy: AccessDenied"), False),
    ],
)
def test_an_outage_is_told_from_a_setting(error: BaseException, outage: bool) -> None:
    from airflow_provider_lucca.extraction.errors import is_outage

    assert is_outage(error) is outage
