"""Table maintenance: compaction and cleanup of the Delta table (and the Iceberg one through the
operator), against tables written by real extraction runs from the sandbox over HTTP.

What a user would notice if it broke: rows lost or doubled by compaction, files a reader of the
current version (or of a version within the retention) needs deleted by vacuum, the table's log
touched, replaced and orphaned files left in storage forever, a compaction that brings back rows
a run committing meanwhile replaced, a first maintenance failing before the first run, and a
typo in the DAG found only on Sunday at 04:00.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import duckdb
import duckdb_extension_delta
import pyarrow as pa
import pytest
from airflow.sdk import DAG

deltalake = pytest.importorskip("deltalake")

from airflow_provider_lucca.client import LuccaConfigError  # noqa: E402
from airflow_provider_lucca.extraction.errors import LuccaStorageError  # noqa: E402
from airflow_provider_lucca.extraction.realized_trainings import (  # noqa: E402
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink  # noqa: E402
from airflow_provider_lucca.extraction.window import DateWindow  # noqa: E402
from airflow_provider_lucca.operators.table_maintenance import (  # noqa: E402
    RealizedTrainingsTableMaintenanceOperator,
)
from airflow_provider_lucca.operators.table_sinks import delta_sink, iceberg_sink  # noqa: E402
from lucca_sandbox import SandboxServer  # noqa: E402
from tests.helpers import SANDBOX_KEY, client_for  # noqa: E402

LOG = logging.getLogger("tests.table_maintenance")
DELTA_EXTENSION = (
    Path(duckdb_extension_delta.__file__).parent
    / "extensions"
    / f"v{duckdb.__version__}"
    / "delta.duckdb_extension"
)
DAGS = Path(__file__).resolve().parents[1] / "dags"
HOUR = 3600.0

Row = dict[str, Any]


# --------------------------------------------------------------------------- runs and readers


def extract(
    sandbox: SandboxServer, sink: Any, start: str, until: str, lookback: int = 0
) -> ExtractionSummary:
    """One extraction run of ``[start, until)`` (plus lookback) into ``sink``."""
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(start), date.fromisoformat(until)),
        lookback_days=lookback,
    )
    with client_for(sandbox.url, api_key=SANDBOX_KEY) as client:
        return extract_realized_trainings(client, request, sink, log=LOG)


def history_then_daily_runs(sandbox: SandboxServer, sink: Any, daily: int = 7) -> None:
    """What the example DAGs do: a history load of January, then daily runs from February 1st,
    each re-extracting the 7 days before it (every run replaces 8 days' files)."""
    extract(sandbox, sink, "2025-01-01", "2025-02-01")
    for number in range(daily):
        day = date(2025, 2, 1) + timedelta(number)
        extract(sandbox, sink, day.isoformat(), (day + timedelta(1)).isoformat(), lookback=7)


def truth_ids(sandbox: SandboxServer, start: str, until: str) -> list[int]:
    return sorted(
        record["id"] for record in sandbox.records if start <= record["sessionEndsOn"] < until
    )


def rows(uri: str, version: int | None = None, **options: str) -> list[Row]:
    """The table's rows at ``version`` (the latest by default), through delta-rs, by id."""
    table = deltalake.DeltaTable(uri, version=version, storage_options=options or None)
    return sorted(table.to_pyarrow_table().to_pylist(), key=lambda row: row["id"])


def duckdb_rows(uri: str) -> list[Row]:
    """The latest version through DuckDB's own Delta reader (a second, independent reader)."""
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    try:
        con.execute(f"LOAD '{DELTA_EXTENSION}'")
        cursor = con.execute("SELECT * FROM delta_scan(?) ORDER BY id", [uri])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
    finally:
        con.close()


def live_files(uri: str, **options: str) -> list[str]:
    """The data files of the latest version, relative to the table's root."""
    table = deltalake.DeltaTable(uri, storage_options=options or None)
    return sorted(table.get_add_actions(flatten=True).column("path").to_pylist())


def stored_files(root: Path) -> list[str]:
    """Every file under the table's root but its log, as a reader that lists files sees them."""
    return sorted(
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not str(path.relative_to(root)).startswith("_delta_log")
    )


def files_per_day(paths: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        day = path.split("/", 1)[0]
        counts[day] = counts.get(day, 0) + 1
    return counts


def maintenance_commits(uri: str) -> list[dict[str, Any]]:
    table = deltalake.DeltaTable(uri)
    return [entry for entry in table.history() if "lucca.maintenance" in entry]


def make_old(path: Path, hours: float) -> None:
    """Give a file the modification time of one written ``hours`` ago."""
    stamp = time.time() - hours * HOUR
    os.utime(path, (stamp, stamp))


def split_days_into_files(uri: str, parts: int = 3) -> None:
    """Rewrite the table's rows as ``parts`` writes, so that each day is held in several small
    files (as another writer's appends leave it): the rows stay the same."""
    table = deltalake.DeltaTable(uri)
    data = table.to_pyarrow_table()
    for part in range(parts):
        # Rows taken in turn: most days get rows in every part, so one file per part.
        chunk = data.filter(pa.array([index % parts == part for index in range(data.num_rows)]))
        deltalake.write_deltalake(
            table, chunk, mode="overwrite" if part == 0 else "append", partition_by=None
        )
        table = deltalake.DeltaTable(uri)


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return tmp_path / "lake" / "realized_trainings"


# --------------------------------------------------------------------------- DeltaSink.maintain


@pytest.mark.slow
def test_maintenance_deletes_the_files_runs_replaced_and_keeps_every_row(
    sandbox: SandboxServer, table: Path
) -> None:
    """After a history load and 7 daily runs with a 7-day lookback, storage holds the files of
    every day each run replaced; with no time travel kept, maintenance deletes exactly those."""
    uri = str(table)
    sink = DeltaSink(uri)
    history_then_daily_runs(sandbox, sink)
    before = rows(uri)
    live, stored = live_files(uri), stored_files(table)
    assert [row["id"] for row in before] == truth_ids(sandbox, "2025-01-01", "2025-02-08")
    replaced = {path: (table / path).stat().st_size for path in set(stored) - set(live)}
    assert len(replaced) >= 7 * 7  # each run replaced the files of the 7 days before it

    counts = sink.maintain(retention=timedelta(0), log=LOG)

    assert stored_files(table) == live_files(uri) == live  # nothing but the current files
    assert counts["removed_files"] == len(replaced)
    assert counts["removed_bytes"] == sum(replaced.values())
    assert counts["live_files"] == len(live)
    assert rows(uri) == before
    assert duckdb_rows(uri) == before  # an independent reader of the current version
    # The log is the table: vacuum never deletes from it.
    log_dir = table / "_delta_log"
    assert all((log_dir / f"{version:020d}.json").exists() for version in range(8))
    # Next week, nothing is left to delete: the log's record of those removals is not counted
    # again, and no commit is made for nothing.
    version = deltalake.DeltaTable(uri).version()
    again = sink.maintain(retention=timedelta(0), log=LOG)
    assert (again["removed_files"], again["removed_bytes"]) == (0, 0)
    assert deltalake.DeltaTable(uri).version() == again["table_version"] == version


def test_compaction_rewrites_each_day_into_one_file_in_one_maintenance_commit(
    sandbox: SandboxServer, table: Path
) -> None:
    uri = str(table)
    extract(sandbox, DeltaSink(uri), "2025-03-01", "2025-03-15")
    split_days_into_files(uri)
    before = rows(uri)
    per_day = files_per_day(live_files(uri))
    assert max(per_day.values()) == 3
    version = deltalake.DeltaTable(uri).version()

    counts = DeltaSink(uri).maintain(retention=timedelta(days=7), log=LOG)

    after = files_per_day(live_files(uri))
    assert set(after) == set(per_day)
    assert set(after.values()) == {1}
    assert rows(uri) == before
    assert duckdb_rows(uri) == before
    several = [day for day, count in per_day.items() if count > 1]
    assert counts["compacted_days"] == len(several)
    assert counts["compacted_files"] == sum(per_day[day] for day in several)
    assert counts["compaction_files_added"] == len(several)
    assert counts["compacted_bytes"] > 0
    # One commit, after the last run, that says what it was.
    history = deltalake.DeltaTable(uri).history()
    optimize = [entry for entry in history if entry["operation"] == "OPTIMIZE"]
    assert [entry["version"] for entry in optimize] == [version + 1]
    assert optimize[0]["lucca.maintenance"] == "compaction"
    assert "lucca.provider_version" in optimize[0]
    # The files it replaced are kept for time travel (7 days): the version before reads the same.
    assert rows(uri, version) == before
    assert counts["removed_files"] == 0


def test_compacting_again_changes_nothing(sandbox: SandboxServer, table: Path) -> None:
    uri = str(table)
    extract(sandbox, DeltaSink(uri), "2025-03-01", "2025-03-08")
    split_days_into_files(uri)
    DeltaSink(uri).maintain(retention=timedelta(days=7), log=LOG)
    version = deltalake.DeltaTable(uri).version()

    counts = DeltaSink(uri).maintain(retention=timedelta(days=7), log=LOG)

    assert counts["compacted_files"] == counts["removed_files"] == 0
    assert deltalake.DeltaTable(uri).version() == counts["table_version"] == version


def test_vacuum_deletes_a_killed_runs_files_but_not_a_running_writers_nor_the_log(
    sandbox: SandboxServer, table: Path
) -> None:
    """A killed run leaves data files no commit lists; a run writing now has some too. With no
    time travel kept, the old ones go, the young ones (under an hour) stay."""
    uri = str(table)
    extract(sandbox, DeltaSink(uri), "2025-03-01", "2025-03-08")
    before = rows(uri)
    live = live_files(uri)
    day = table / "session_end_on=2025-03-03"
    # A copy of a real data file: a reader listing files would count its rows twice.
    data = (table / live[0]).read_bytes()
    killed = day / "part-00000-0d1e-killed-c000.snappy.parquet"
    running = day / "part-00000-0d1e-running-c000.snappy.parquet"
    hidden_in_day = day / "_started.parquet"
    for path in (killed, running, hidden_in_day):
        path.write_bytes(data)
    make_old(killed, 2)
    make_old(hidden_in_day, 2)
    # What vacuum never deletes: the log, and names starting with _ or . at the table's root.
    ours = table / "_lucca_notes.txt"
    ours.write_text("kept")
    make_old(ours, 2)
    log_files = sorted(path.name for path in (table / "_delta_log").iterdir())

    counts = DeltaSink(uri).maintain(retention=timedelta(0), log=LOG)

    assert not killed.exists()
    assert not hidden_in_day.exists()  # _ protects a name at the root only
    assert running.exists()
    assert ours.exists()
    assert counts["removed_files"] == 2
    assert counts["removed_bytes"] == 2 * len(data)
    assert set(log_files) <= {path.name for path in (table / "_delta_log").iterdir()}
    assert rows(uri) == before
    assert duckdb_rows(uri) == before
    assert stored_files(table) == sorted([*live, str(running.relative_to(table)), ours.name])


def test_time_travel_within_the_retention_still_works_after_maintenance(
    sandbox: SandboxServer, table: Path
) -> None:
    """Every version of the last 7 days reads the same after two weekly maintenances, even when
    the table forgets removals fast (``delta.deletedFileRetentionDuration``, which a checkpoint
    applies) and its data files were written long ago: vacuum then sees files no commit lists,
    old enough to be a killed run's, which versions still in reach use."""
    uri = str(table)
    sink = DeltaSink(uri)
    extract(sandbox, sink, "2025-03-01", "2025-03-15")
    deltalake.DeltaTable(uri).alter.set_table_properties(
        {"delta.deletedFileRetentionDuration": "interval 0 seconds"}
    )
    for number in range(3):
        day = date(2025, 3, 15) + timedelta(number)
        extract(sandbox, sink, day.isoformat(), (day + timedelta(1)).isoformat(), lookback=7)
    last = deltalake.DeltaTable(uri).version()
    versions = {version: rows(uri, version) for version in range(last + 1)}
    for path in stored_files(table):
        make_old(table / path, 24 * 30)

    for _week in range(2):
        sink.maintain(retention=timedelta(days=7), log=LOG)

    for version, expected in versions.items():
        assert rows(uri, version) == expected, version


def test_no_time_travel_kept_means_the_old_versions_are_gone(
    sandbox: SandboxServer, table: Path
) -> None:
    uri = str(table)
    sink = DeltaSink(uri)
    extract(sandbox, sink, "2025-03-01", "2025-03-08")
    extract(sandbox, sink, "2025-03-08", "2025-03-09", lookback=7)
    latest = rows(uri)

    sink.maintain(retention=timedelta(0), log=LOG)

    with pytest.raises(Exception, match=r"(?i)not found|no such file"):
        rows(uri, 0)
    assert rows(uri) == latest


def test_the_log_is_trimmed_to_its_retention_but_never_below_the_time_travel_asked_for(
    sandbox: SandboxServer, table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Log entries older than ``delta.logRetentionDuration`` go once a checkpoint covers them
    (readers load the checkpoint); when time travel is asked for longer, the log is kept."""
    uri = str(table)
    sink = DeltaSink(uri)
    extract(sandbox, sink, "2025-03-01", "2025-03-08")
    deltalake.DeltaTable(uri).alter.set_table_properties(
        {"delta.logRetentionDuration": "interval 1 hours"}
    )
    extract(sandbox, sink, "2025-03-08", "2025-03-09", lookback=7)
    log_dir = table / "_delta_log"
    for path in log_dir.glob("*.json"):
        make_old(path, 2)
    latest = rows(uri)

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        sink.maintain(retention=timedelta(days=1), log=LOG)
    assert "Kept the whole log" in caplog.text
    assert (log_dir / f"{0:020d}.json").exists()
    assert rows(uri, 0)  # a day of time travel asked for: version 0 still reads

    counts = sink.maintain(retention=timedelta(0), log=LOG)

    assert not (log_dir / f"{0:020d}.json").exists()
    assert (log_dir / f"{counts['table_version']:020d}.checkpoint.parquet").exists()
    assert rows(uri) == latest
    assert duckdb_rows(uri) == latest


def test_a_table_not_created_yet_is_maintained_by_doing_nothing(
    table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The weekly maintenance may run before the first extraction ever committed."""
    with caplog.at_level(logging.INFO, logger=LOG.name):
        counts = DeltaSink(str(table)).maintain(retention=timedelta(days=7), log=LOG)
    assert set(counts.values()) == {0}
    assert "does not exist yet: nothing to maintain" in caplog.text
    assert not table.exists()


def test_a_negative_retention_is_refused(table: Path) -> None:
    with pytest.raises(LuccaConfigError, match="retention"):
        DeltaSink(str(table)).maintain(retention=timedelta(days=-1), log=LOG)


class RacedSink(DeltaSink):
    """A sink whose compaction is overtaken: right after it opened the table to compact it, an
    extraction run commits (a real run, through its own sink)."""

    def __init__(self, uri: str, race: Any, **options: Any) -> None:
        super().__init__(uri, **options)
        self.race = race
        self.opened = 0

    def open(self) -> Any:
        table = super().open()
        self.opened += 1
        if self.opened == 2:  # maintain() looked, then _compact's first attempt opened it
            self.race()
        return table


def test_compaction_overtaken_by_a_run_starts_again_on_the_new_version(
    sandbox: SandboxServer, table: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The run replaces three days the compaction was rewriting: committing its rewrite anyway
    would bring back the rows the run removed (or double them)."""
    uri = str(table)
    extract(sandbox, DeltaSink(uri), "2025-03-01", "2025-03-15")
    split_days_into_files(uri)
    expected = rows(uri)
    run_days = {f"session_end_on=2025-03-0{day}" for day in (5, 6, 7)}
    several = {day for day, count in files_per_day(live_files(uri)).items() if count > 1}
    assert run_days <= several
    sink = RacedSink(uri, lambda: extract(sandbox, DeltaSink(uri), "2025-03-05", "2025-03-08"))

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        counts = sink.maintain(retention=timedelta(days=7), log=LOG)

    assert "committing again on the new table version" in caplog.text
    assert rows(uri) == expected
    assert set(files_per_day(live_files(uri)).values()) == {1}
    assert counts["compacted_days"] == len(several - run_days)  # the run's have one file now
    operations = [entry["operation"] for entry in deltalake.DeltaTable(uri).history()]
    assert operations[:2] == ["OPTIMIZE", "WRITE"]  # newest first: the compaction came second
    assert operations.count("OPTIMIZE") == 1


def test_compaction_that_keeps_losing_races_fails_clearly_and_changes_nothing(
    sandbox: SandboxServer, table: Path
) -> None:
    uri = str(table)
    extract(sandbox, DeltaSink(uri), "2025-03-01", "2025-03-15")
    split_days_into_files(uri)
    expected, version = rows(uri), deltalake.DeltaTable(uri).version()
    sink = RacedSink(
        uri,
        lambda: extract(sandbox, DeltaSink(uri), "2025-03-05", "2025-03-08"),
        commit_retries=0,
    )

    with pytest.raises(LuccaStorageError, match="lost a race with another writer"):
        sink.maintain(retention=timedelta(days=7), log=LOG)

    history = deltalake.DeltaTable(uri).history()
    assert [entry["operation"] for entry in history[:2]] == ["WRITE", "WRITE"]
    assert history[0]["version"] == version + 1  # the run's commit, and nothing after it
    assert rows(uri) == expected


# --------------------------------------------------------------------------- the operator


def make_dag(**params: Any) -> DAG:
    return DAG("lucca_maintenance_test", schedule=None, params=params)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"file_format": "jsonl", "output_path": "/lake"}, "Invalid file_format='jsonl'"),
        ({"file_format": "Delta", "output_path": "/lake"}, "expected 'delta' or 'iceberg'"),
        ({"file_format": "delta"}, "Invalid output_path=None"),
        ({"file_format": "delta", "output_path": "lake/relative"}, "Invalid output_path="),
        ({"file_format": "delta", "output_path": "/lake", "retention_days": -1}, "retention_days"),
        ({"file_format": "delta", "output_path": "/lake", "retention_days": 1.5}, "whole number"),
        ({"file_format": "delta", "output_path": "/lake", "retention_days": "7"}, "from 0 to"),
        ({"file_format": "delta", "output_path": "/lake", "retention_days": True}, "days"),
        ({"file_format": "delta", "output_path": "/lake", "retention_days": 3651}, "3650"),
        (
            {"file_format": "delta", "output_path": "/lake", "iceberg_table": "lucca.rt"},
            "iceberg_table is only used with file_format='iceberg'",
        ),
        ({"file_format": "iceberg"}, "Invalid iceberg_table=None: expected namespace.table"),
        ({"file_format": "iceberg", "iceberg_table": "realized"}, "expected namespace.table"),
        (
            {"file_format": "iceberg", "iceberg_table": "lucca.rt", "output_path": "/lake"},
            "output_path is not used with file_format='iceberg'",
        ),
    ],
)
def test_bad_parameters_fail_when_the_dag_is_parsed(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(LuccaConfigError) as raised:
        RealizedTrainingsTableMaintenanceOperator(task_id="maintain", **kwargs)
    assert message in str(raised.value)


def test_templated_targets_wait_for_rendering_then_are_checked(table: Path) -> None:
    with make_dag(root="not a url"):
        op = RealizedTrainingsTableMaintenanceOperator(
            task_id="maintain", file_format="delta", output_path="{{ params.root }}"
        )
    context: dict[str, Any] = {"params": {"root": "not a url"}, "dag": op.dag}
    op.render_template_fields(context)
    with pytest.raises(LuccaConfigError, match="Invalid output_path='not a url'"):
        op.execute(context)


def test_the_operator_maintains_the_table_and_returns_its_report(
    sandbox: SandboxServer, table: Path
) -> None:
    uri = str(table)
    sink = DeltaSink(uri)
    extract(sandbox, sink, "2025-03-01", "2025-03-08")
    extract(sandbox, sink, "2025-03-08", "2025-03-09", lookback=7)
    split_days_into_files(uri)
    before = rows(uri)
    with make_dag(root=table.as_uri()):
        op = RealizedTrainingsTableMaintenanceOperator(
            task_id="maintain",
            file_format="delta",
            output_path="{{ params.root }}",
            retention_days=0,
        )
    context: dict[str, Any] = {"params": {"root": table.as_uri()}, "dag": op.dag}
    op.render_template_fields(context)

    summary = op.execute(context)

    assert json.loads(json.dumps(summary)) == summary  # an XCom
    assert summary["table"] == f"Delta table {table}"
    assert (summary["file_format"], summary["retention_days"]) == ("delta", 0)
    counts = summary["counts"]
    assert counts["compacted_days"] == 8
    assert counts["removed_files"] > counts["compacted_files"]  # the runs' replaced files too
    assert stored_files(table) == live_files(uri)
    assert counts["live_files"] == len(live_files(uri)) == 8
    assert rows(uri) == before


def test_the_operator_before_the_first_run_does_nothing_and_succeeds(table: Path) -> None:
    op = RealizedTrainingsTableMaintenanceOperator(
        task_id="maintain", file_format="delta", output_path=table.as_uri()
    )
    summary = op.execute({})
    assert set(summary["counts"].values()) == {0}
    assert not table.exists()


def test_the_operator_refuses_a_root_that_holds_files_but_no_table(table: Path) -> None:
    """A files dataset at that root is a mistaken path, not a table still to come."""
    (table / "session_end_on=2025-03-01").mkdir(parents=True)
    part = table / "session_end_on=2025-03-01" / "part-0.jsonl.gz"
    part.write_bytes(b"data")
    op = RealizedTrainingsTableMaintenanceOperator(
        task_id="maintain", file_format="delta", output_path=table.as_uri()
    )
    with pytest.raises(LuccaConfigError, match="holds no Delta table"):
        op.execute({})
    assert part.read_bytes() == b"data"


@pytest.mark.slow
def test_the_operator_on_s3_deletes_replaced_and_orphaned_objects(
    sandbox: SandboxServer, s3_bucket: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On S3 (moto), through the Airflow connection in the URL, as the DAG configures it."""
    url = f"s3://aws_local@{s3_bucket}/lucca/realized_trainings"
    sink = delta_sink(url)
    extract(sandbox, sink, "2025-03-01", "2025-03-08")
    extract(sandbox, sink, "2025-03-08", "2025-03-09", lookback=7)
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    prefix = "lucca/realized_trainings/"

    def data_objects() -> list[str]:
        listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])
        names = [item["Key"][len(prefix) :] for item in listed]
        return sorted(name for name in names if not name.startswith("_delta_log/"))

    options = sink.storage_options
    before = rows(sink.uri, **options)
    live = live_files(sink.uri, **options)
    assert len(data_objects()) == len(live) + 7
    # A killed run's data file (S3 keeps no settable date: no margin for a run writing now).
    orphan = f"{prefix}session_end_on=2025-03-03/part-00000-killed-c000.snappy.parquet"
    s3.put_object(Bucket=s3_bucket, Key=orphan, Body=b"PAR1 not listed PAR1")
    monkeypatch.setattr(DeltaSink, "orphan_min_age", timedelta(0))
    op = RealizedTrainingsTableMaintenanceOperator(
        task_id="maintain", file_format="delta", output_path=url, retention_days=0
    )

    summary = op.execute({})

    assert summary["counts"]["removed_files"] == 7 + 1
    assert data_objects() == live_files(sink.uri, **options) == live
    assert rows(sink.uri, **options) == before


@pytest.mark.slow
def test_the_operator_maintains_an_iceberg_table(
    sandbox: SandboxServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "catalog"
    home.mkdir()
    monkeypatch.setenv(
        "AIRFLOW_CONN_ICEBERG_DEFAULT",
        json.dumps(
            {
                "conn_type": "generic",
                "extra": {
                    "type": "sql",
                    "uri": f"sqlite:///{home / 'catalog.db'}",
                    "warehouse": (home / "warehouse").as_uri(),
                },
            }
        ),
    )
    sink = iceberg_sink("iceberg_default", "lucca.realized_trainings")
    extract(sandbox, sink, "2025-03-01", "2025-03-08")
    extract(sandbox, sink, "2025-03-08", "2025-03-09", lookback=7)

    def scan() -> list[Row]:
        loaded = iceberg_sink("iceberg_default", "lucca.realized_trainings").load_table()
        assert loaded is not None
        return sorted(loaded.scan().to_arrow().to_pylist(), key=lambda row: row["id"])

    before = scan()
    assert [row["id"] for row in before] == truth_ids(sandbox, "2025-03-01", "2025-03-09")
    op = RealizedTrainingsTableMaintenanceOperator(
        task_id="maintain",
        file_format="iceberg",
        iceberg_table="lucca.realized_trainings",
        retention_days=0,
    )

    summary = op.execute({})

    assert summary["table"] == "Iceberg table lucca.realized_trainings (catalog iceberg_default)"
    assert summary["counts"]["expired_snapshots"] >= 1  # the first run's snapshot
    assert scan() == before


# --------------------------------------------------------------------------- the example DAG


@pytest.fixture
def maintenance_dag(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``maintenance_dag(LUCCA_FILE_FORMAT=...)``: the maintenance DAG as parsed with those
    settings (the dags/ modules read them when imported)."""
    modules = ("lucca_common", "lucca_realized_trainings_maintenance")
    monkeypatch.syspath_prepend(str(DAGS))

    def parse(**env: str) -> Any:
        for name in [name for name in os.environ if name.startswith("LUCCA_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for module in modules:
            sys.modules.pop(module, None)
        import lucca_realized_trainings_maintenance

        return lucca_realized_trainings_maintenance.lucca_realized_trainings_maintenance_dag

    yield parse
    for module in modules:
        sys.modules.pop(module, None)


@pytest.mark.parametrize("file_format", ["delta", "iceberg"])
def test_the_weekly_dag_maintains_the_table_the_extracts_write(
    maintenance_dag: Any, tmp_path: Path, file_format: str
) -> None:
    root = (tmp_path / "lake").as_uri()
    dag = maintenance_dag(
        LUCCA_FILE_FORMAT=file_format,
        LUCCA_OUTPUT_PATH=root,
        LUCCA_ICEBERG_TABLE="lake.hr.realized_trainings",
        LUCCA_ICEBERG_CONN_ID="iceberg_lake",
    )
    assert dag.timetable.expression == "0 4 * * 0"  # Sundays
    assert [task.task_id for task in dag.tasks] == ["maintain_table"]
    task = dag.get_task("maintain_table")
    assert isinstance(task, RealizedTrainingsTableMaintenanceOperator)
    assert (task.file_format, task.retention_days) == (file_format, 7)
    if file_format == "delta":
        assert (task.output_path, task.iceberg_table) == (root, None)
    else:
        assert (task.output_path, task.iceberg_table, task.iceberg_conn_id) == (
            None,
            "lake.hr.realized_trainings",
            "iceberg_lake",
        )


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_the_weekly_dag_still_sweeps_files(maintenance_dag: Any, file_format: str) -> None:
    dag = maintenance_dag(LUCCA_FILE_FORMAT=file_format)
    assert [task.task_id for task in dag.tasks] == ["sweep_unlisted_files"]
