"""The Iceberg output against the Lucca sandbox over HTTP: a real pyiceberg SQL catalog on SQLite,
its warehouse on local disk and on S3 (moto's server).

The contract for readers is the table's current snapshot, and every check reads through it with
three independent readers: pyiceberg's scan; polars (its own Parquet reader); and DuckDB, reading
the data files that this module's own walk of the table's metadata (the metadata JSON, then the
manifest list and manifests in Avro, read with polars) finds live in the current snapshot. DuckDB's
``iceberg_scan`` cannot run here: the duckdb-extension-iceberg wheel loads, then asks for the avro
extension, which DuckDB would download.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pendulum
import pytest
from airflow.sdk import DAG
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client import LuccaConfigError
from airflow_provider_lucca.extraction.errors import LuccaStorageError
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import iceberg as iceberg_module
from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.table_sinks import iceberg_catalog_properties
from lucca_sandbox import BOUNDS, SandboxConfig, SandboxServer
from tests.helpers import RECORD_FIELDS, SANDBOX_KEY, client_for

LOG = logging.getLogger("tests.iceberg")
TABLE = "lucca.realized_trainings"
CATALOG = "lucca"
CHILD = Path(__file__).resolve().parent / "iceberg_child.py"
COLUMNS = (*RECORD_FIELDS, "_extra", "session_end_on")
TRAINING_KEYS = ("id", "title", "categoryId", "providerUrl", "level")
ODD_DAY = "2025-06-10"


# --------------------------------------------------------------------------- the lake


@dataclass
class Lake:
    """A SQL catalog on SQLite and its warehouse (a local directory or an S3 prefix)."""

    directory: Path
    warehouse: str
    s3_options: dict[str, str] = field(default_factory=dict)
    s3: Any = None

    @property
    def catalog(self) -> dict[str, str]:
        return {
            "type": "sql",
            "uri": f"sqlite:///{self.directory / 'catalog.db'}",
            "warehouse": self.warehouse,
            **self.s3_options,
        }

    def sink(self, table: str = TABLE, **options: Any) -> IcebergSink:
        return IcebergSink(self.catalog, table, catalog_name=CATALOG, **options)

    def metadata_location(self, table: str = TABLE, catalog: str = CATALOG) -> str | None:
        """The catalog's pointer, read from its database without pyiceberg."""
        namespace, _, name = table.rpartition(".")
        with sqlite3.connect(self.directory / "catalog.db") as connection:
            row = connection.execute(
                "SELECT metadata_location FROM iceberg_tables "
                "WHERE catalog_name = ? AND table_namespace = ? AND table_name = ?",
                (catalog, namespace, name),
            ).fetchone()
        return None if row is None else str(row[0])

    def read_bytes(self, uri: str) -> bytes:
        parts = urlsplit(uri)
        if parts.scheme == "s3":
            response = self.s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))
            return response["Body"].read()  # type: ignore[no-any-return]
        return Path(parts.path).read_bytes()

    def files(self, location: str) -> set[str]:
        """Every file under a location, as URIs the table's metadata would name them."""
        parts = urlsplit(location)
        if parts.scheme == "s3":
            found: set[str] = set()
            paginator = self.s3.get_paginator("list_objects_v2")
            prefix = parts.path.lstrip("/").rstrip("/") + "/"
            for page in paginator.paginate(Bucket=parts.netloc, Prefix=prefix):
                found.update(
                    f"s3://{parts.netloc}/{item['Key']}" for item in page.get("Contents", [])
                )
            return found
        root = Path(parts.path)
        return {f"file://{path}" for path in root.rglob("*") if path.is_file()}

    def age_files(self, location: str, hours: float) -> None:
        """Make every file under a local location look ``hours`` older."""
        then = time.time() - hours * 3600
        for uri in self.files(location):
            os.utime(urlsplit(uri).path, (then, then))


@pytest.fixture
def local_lake(tmp_path: Path) -> Lake:
    return Lake(tmp_path, f"file://{tmp_path}/warehouse")


@pytest.fixture
def s3_lake(tmp_path: Path, moto_s3: str, s3_bucket: str) -> Lake:
    import boto3

    options = {
        "s3.endpoint": moto_s3,
        "s3.access-key-id": "test",
        "s3.secret-access-key": "test",
        "s3.region": "us-east-1",
    }
    client = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    return Lake(tmp_path, f"s3://{s3_bucket}/warehouse", options, client)


@pytest.fixture(params=["file", "s3"])
def lake(request: pytest.FixtureRequest) -> Lake:
    return request.getfixturevalue("local_lake" if request.param == "file" else "s3_lake")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- three readers


def table_metadata(lake: Lake, table: str = TABLE) -> dict[str, Any]:
    location = lake.metadata_location(table)
    assert location is not None, f"{table} is not in the catalog"
    return json.loads(lake.read_bytes(location))  # type: ignore[no-any-return]


def read_avro(lake: Lake, uri: str) -> list[dict[str, Any]]:
    import polars as pl

    return pl.read_avro(io.BytesIO(lake.read_bytes(uri))).to_dicts()


def live_data_files(lake: Lake, metadata: dict[str, Any]) -> list[str]:
    """The data files of the current snapshot, from the metadata files alone."""
    current = metadata.get("current-snapshot-id")
    if current in (None, -1):
        return []
    (snapshot,) = [s for s in metadata["snapshots"] if s["snapshot-id"] == current]
    files: list[str] = []
    for manifest in read_avro(lake, snapshot["manifest-list"]):
        assert manifest["content"] == 0, "this writer writes no delete files"
        for entry in read_avro(lake, manifest["manifest_path"]):
            if entry["status"] != 2:  # 2: deleted in this snapshot
                files.append(entry["data_file"]["file_path"])
    assert len(files) == len(set(files)), "a data file listed twice"
    return files


def referenced_files(lake: Lake, metadata_location: str) -> set[str]:
    """Every file the table's metadata reaches: metadata files, and for each snapshot its
    manifest list, manifests and live data files."""
    metadata = json.loads(lake.read_bytes(metadata_location))
    found = {metadata_location, *(entry["metadata-file"] for entry in metadata["metadata-log"])}
    for snapshot in metadata.get("snapshots", []):
        found.add(snapshot["manifest-list"])
        for manifest in read_avro(lake, snapshot["manifest-list"]):
            found.add(manifest["manifest_path"])
            for entry in read_avro(lake, manifest["manifest_path"]):
                if entry["status"] != 2:
                    found.add(entry["data_file"]["file_path"])
    return found


def by_id(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        assert set(row) == set(COLUMNS), sorted(row)
        if row["_extra"] is not None:
            row["_extra"] = json.loads(row["_extra"])
    return sorted(rows, key=lambda row: row["id"])


def read_pyiceberg(lake: Lake, table: str = TABLE) -> list[dict[str, Any]]:
    from pyiceberg.catalog import load_catalog

    loaded = load_catalog(CATALOG, **lake.catalog).load_table(table)
    return by_id(loaded.scan().to_arrow().to_pylist())


def read_polars(lake: Lake, table: str = TABLE) -> list[dict[str, Any]]:
    import polars as pl

    location = lake.metadata_location(table)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pl.exceptions.PerformanceWarning)
        frame = pl.scan_iceberg(
            location, storage_options=lake.s3_options or None, reader_override="native"
        ).collect()
    return by_id(frame.to_dicts())


def read_duckdb(lake: Lake, table: str = TABLE) -> list[dict[str, Any]]:
    import duckdb

    files = live_data_files(lake, table_metadata(lake, table))
    if not files:
        return []
    connection = duckdb.connect()
    if lake.s3 is not None:
        import s3fs

        options = lake.s3_options
        connection.register_filesystem(
            s3fs.S3FileSystem(
                key=options["s3.access-key-id"],
                secret=options["s3.secret-access-key"],
                endpoint_url=options["s3.endpoint"],
                client_kwargs={"region_name": options["s3.region"]},
            )
        )
    else:
        files = [urlsplit(uri).path for uri in files]
    result = connection.execute("SELECT * FROM read_parquet(?, hive_partitioning = false)", [files])
    names = [column[0] for column in result.description]
    return by_id([dict(zip(names, row, strict=True)) for row in result.fetchall()])


READERS = {"pyiceberg": read_pyiceberg, "polars": read_polars, "duckdb": read_duckdb}


def read_all(lake: Lake, table: str = TABLE) -> list[dict[str, Any]]:
    """What the three readers see; they must agree with each other."""
    seen = {name: reader(lake, table) for name, reader in READERS.items()}
    assert seen["polars"] == seen["pyiceberg"]
    assert seen["duckdb"] == seen["pyiceberg"]
    return seen["pyiceberg"]


# --------------------------------------------------------------------------- the truth


def day_range(start: str, until: str) -> list[str]:
    first, end = date.fromisoformat(start), date.fromisoformat(until)
    return [(first + timedelta(n)).isoformat() for n in range((end - first).days)]


def expected_row(record: dict[str, Any]) -> dict[str, Any]:
    """The typed row of a well-formed sandbox record, written out by hand."""
    assert set(record) <= set(COLUMNS), record
    training = record.get("training")
    duration = record.get("durationInHours")
    cents = None if duration is None else Decimal(str(duration)).quantize(Decimal("0.01"))
    assert cents is None or cents == Decimal(str(duration))
    return {
        "id": record["id"],
        "ownerId": record.get("ownerId"),
        "training": None if training is None else {k: training.get(k) for k in TRAINING_KEYS},
        "trainingDemandId": record.get("trainingDemandId"),
        "sessionId": record.get("sessionId"),
        "sessionStartsOn": _date(record.get("sessionStartsOn")),
        "sessionEndsOn": date.fromisoformat(record["sessionEndsOn"]),
        "hasAttended": record.get("hasAttended"),
        "durationInHours": cents,
        "_extra": None,
        "session_end_on": date.fromisoformat(record["sessionEndsOn"]),
    }


def _date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def truth(records: list[dict[str, Any]], start: str, until: str) -> list[dict[str, Any]]:
    """The rows the table must hold for ``[start, until)``, sorted by id."""
    days = set(day_range(start, until))
    rows = [expected_row(r) for r in records if r["sessionEndsOn"] in days]
    return sorted(rows, key=lambda row: row["id"])


def assert_exact_decimals(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        value = row["durationInHours"]
        assert value is None or (isinstance(value, Decimal) and value.as_tuple().exponent == -2)


def extract(url: str, sink: IcebergSink, start: str, until: str, **options: Any) -> dict[str, Any]:
    run_id = options.pop("run_id", None)
    page_size = options.pop("page_size", 100)
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(start), date.fromisoformat(until)), **options
    )
    with client_for(url, api_key=SANDBOX_KEY, page_size=page_size) as client:
        return dict(extract_realized_trainings(client, request, sink, log=LOG, run_id=run_id))


def odd_records() -> list[dict[str, Any]]:
    """Records that stress exactness: big and small decimals, nulls, misfits, unknown fields."""
    base = {"ownerId": 416, "sessionStartsOn": "2025-06-09", "sessionEndsOn": ODD_DAY}
    training = {"id": 45, "title": "Français ✓", "categoryId": 1, "level": "Beginner"}
    return [
        {"id": 900001, **base, "training": training, "durationInHours": 1234567.89},
        {"id": 900002, **base, "trainingDemandId": None, "durationInHours": 0.1},
        {"id": 900003, **base, "hasAttended": False, "durationInHours": 1.005},
        {"id": 900004, **base, "durationInHours": 14, "customField": {"note": "déjà vu"}},
        {"id": 900005, **base, "ownerId": "416", "durationInHours": 2.35},
    ]


def odd_expected() -> dict[int, dict[str, Any]]:
    common = {
        "trainingDemandId": None,
        "sessionId": None,
        "sessionStartsOn": date(2025, 6, 9),
        "sessionEndsOn": date(2025, 6, 10),
        "session_end_on": date(2025, 6, 10),
        "hasAttended": None,
        "training": None,
        "ownerId": 416,
        "_extra": None,
    }
    training = {
        "id": 45,
        "title": "Français ✓",
        "categoryId": 1,
        "providerUrl": None,
        "level": "Beginner",
    }
    rows = {
        900001: {"training": training, "durationInHours": Decimal("1234567.89")},
        900002: {"durationInHours": Decimal("0.10")},
        900003: {
            "hasAttended": False,
            "durationInHours": None,
            "_extra": {"durationInHours": 1.005},
        },
        900004: {
            "durationInHours": Decimal("14.00"),
            "_extra": {"customField": {"note": "déjà vu"}},
        },
        900005: {"ownerId": None, "durationInHours": Decimal("2.35"), "_extra": {"ownerId": "416"}},
    }
    return {key: {**common, **row, "id": key} for key, row in rows.items()}


# --------------------------------------------------------------------------- exact readers


@pytest.mark.slow
def test_three_readers_see_the_sandbox_truth_row_for_row(
    sandbox: SandboxServer, lake: Lake
) -> None:
    sandbox.configure(add_records=odd_records())
    regular = [r for r in sandbox.records if r["id"] < 900000]
    sink = lake.sink()

    first = extract(sandbox.url, sink, "2025-05-20", "2025-06-12")
    second = extract(sandbox.url, sink, "2025-06-05", "2025-06-20")
    want = truth(regular, "2025-05-20", "2025-06-20")
    assert len(want) > 100

    got = read_all(lake)
    odd = {row["id"]: row for row in got if row["id"] >= 900000}
    assert odd == odd_expected()
    assert [row for row in got if row["id"] < 900000] == want
    assert len({row["id"] for row in got}) == len(got), "a record was stored twice"
    assert_exact_decimals(got)
    assert first["table_version"] != second["table_version"]
    assert second["records"] == len(truth(regular, "2025-06-05", "2025-06-20")) + len(odd)


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    size=st.integers(0, 300),
    bounds=st.sampled_from(BOUNDS),
    data=st.data(),
)
def test_any_split_reruns_and_lookback_leave_the_truth_once(
    property_sandbox: SandboxServer,
    property_lake: Lake,
    seed: int,
    size: int,
    bounds: str,
    data: st.DataObject,
) -> None:
    first = date(2025, 2, 1) + timedelta(data.draw(st.integers(0, 60), label="offset"))
    span = data.draw(st.integers(2, 40), label="span")
    cuts = sorted(data.draw(st.sets(st.integers(1, span - 1), max_size=4), label="cuts"))
    edges = [first + timedelta(n) for n in (0, *cuts, span)]
    windows = [(a.isoformat(), b.isoformat()) for a, b in itertools.pairwise(edges)]
    reruns = data.draw(st.lists(st.sampled_from(windows), max_size=2), label="reruns")
    order = data.draw(st.permutations(windows + reruns), label="order")
    lookbacks = [data.draw(st.integers(0, 3), label="lookback") for _ in order]

    sample = {"ownerId": 1, "training": {"id": 3}, "hasAttended": True, "durationInHours": 0.01}
    edge_records = [
        {**sample, "id": 9_000_000 + n, "sessionEndsOn": day.isoformat()}
        for n, day in enumerate(d + timedelta(shift) for d in edges for shift in (-1, 0))
    ]
    property_sandbox.configure(
        seed=seed,
        records=size,
        start="2025-01-20",
        end="2025-05-31",
        bounds=bounds,
        add_records=edge_records,
    )
    sink = property_lake.sink(f"lucca.t{uuid.uuid4().hex[:10]}")
    for (start, until), lookback in zip(order, lookbacks, strict=True):
        extract(property_sandbox.url, sink, start, until, lookback_days=lookback, page_size=50)
    earliest = min(
        date.fromisoformat(start) - timedelta(lookback)
        for (start, _), lookback in zip(order, lookbacks, strict=True)
    )
    got = read_pyiceberg(property_lake, sink.identifier)
    assert got == truth(property_sandbox.records, earliest.isoformat(), edges[-1].isoformat())


@pytest.fixture(scope="module")
def property_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(records=0)) as server:
        yield server


@pytest.fixture(scope="module")
def property_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    directory = tmp_path_factory.mktemp("iceberg-property")
    return Lake(directory, f"file://{directory}/warehouse")


# --------------------------------------------------------------------------- one commit per run


@pytest.mark.slow
def test_each_run_is_one_snapshot_describing_the_run(
    sandbox: SandboxServer, local_lake: Lake
) -> None:
    owners = sorted({r["ownerId"] for r in truth(sandbox.records, "2025-03-03", "2025-03-12")})
    owners = owners[:4]
    sink = local_lake.sink()
    extract(sandbox.url, sink, "2025-03-01", "2025-03-08")
    summary = extract(
        sandbox.url,
        sink,
        "2025-03-05",
        "2025-03-12",
        lookback_days=2,
        owner_ids=tuple(owners),
        has_attended=True,
        run_id="scheduled__2025-03-05",
    )
    metadata = table_metadata(local_lake)
    snapshots = metadata["snapshots"]
    assert len(snapshots) == 2, "one snapshot per run"
    last = snapshots[-1]
    assert metadata["current-snapshot-id"] == last["snapshot-id"] == summary["table_version"]
    info = last["summary"]
    assert info["operation"] == "overwrite"
    assert {key: value for key, value in info.items() if key.startswith("lucca.")} == {
        "lucca.dataset": "lucca.realized_trainings",
        "lucca.window_from": "2025-03-03",
        "lucca.window_until": "2025-03-12",
        "lucca.requested_from": "2025-03-05",
        "lucca.lookback_days": "2",
        "lucca.filters": json.dumps(
            {"has_attended": True, "owner_ids": owners, "training_ids": None},
            sort_keys=True,
        ),
        "lucca.api_reported_count": str(summary["reported_count"]),
        "lucca.api_received": str(summary["received"]),
        "lucca.records": str(summary["records"]),
        "lucca.run_id": "scheduled__2025-03-05",
        "lucca.run_token": summary["run_token"],
        "lucca.extracted_at": info["lucca.extracted_at"],
        "lucca.provider_version": __version__,
    }
    assert summary["records"] > 0
    assert int(info["added-records"]) == summary["records"]
    assert summary["file_format"] == "iceberg"
    assert summary["output_path"] == f"Iceberg table {TABLE} (catalog {CATALOG})"
    days = day_range("2025-03-03", "2025-03-12")
    assert list(summary["partitions"]) == days
    filtered = [
        r for r in sandbox.records if r["ownerId"] in owners and r.get("hasAttended", True) is True
    ]
    want = truth(sandbox.records, "2025-03-01", "2025-03-03") + truth(
        filtered, "2025-03-03", "2025-03-12"
    )
    assert read_pyiceberg(local_lake) == sorted(want, key=lambda row: row["id"])


@pytest.mark.slow
def test_a_rerun_replaces_its_window_and_empty_days_lose_their_rows(
    sandbox: SandboxServer, local_lake: Lake
) -> None:
    sink = local_lake.sink()
    start, until = "2025-04-01", "2025-04-15"
    extract(sandbox.url, sink, start, until)
    before = read_all(local_lake)
    assert before == truth(sandbox.records, start, until)

    emptied = ["2025-04-03", "2025-04-10"]
    gone = [r["id"] for r in sandbox.records if r["sessionEndsOn"] in emptied]
    assert gone
    template = sandbox.records[0]
    sandbox.configure(
        delete_ids=gone, add_records=[{**template, "id": 8_000_001, "sessionEndsOn": "2025-04-05"}]
    )
    summary = extract(sandbox.url, sink, start, until)
    after = read_all(local_lake)
    assert after == truth(sandbox.records, start, until)
    assert not [row for row in after if row["session_end_on"].isoformat() in emptied]
    assert {summary["partitions"][day] for day in emptied} == {0}
    assert len(after) == len(before) - len(gone) + 1

    # The same window again: replaced, never doubled.
    extract(sandbox.url, sink, start, until)
    assert read_all(local_lake) == after

    # A window with no record at all empties its days, and only those.
    sandbox.configure(
        delete_ids=[r["id"] for r in sandbox.records if r["sessionEndsOn"] < "2025-04-08"]
    )
    summary = extract(sandbox.url, sink, "2025-04-01", "2025-04-08")
    assert summary["records"] == 0
    assert read_all(local_lake) == truth(sandbox.records, start, until)
    assert min(row["session_end_on"] for row in read_pyiceberg(local_lake)) == date(2025, 4, 8)
    live = live_data_files(local_lake, table_metadata(local_lake))
    emptied_days = [f"session_end_on={day}/" for day in day_range("2025-04-01", "2025-04-08")]
    assert not [path for path in live if any(day in path for day in emptied_days)]


# --------------------------------------------------------------------------- crashes and races


def spawn(
    lake: Lake, sandbox: SandboxServer, start: str, until: str, log: Path, **spec: Any
) -> Any:
    """A child run (tests/iceberg_child.py), its output going to ``log``."""
    payload = {
        "url": sandbox.url,
        "api_key": SANDBOX_KEY,
        "catalog": lake.catalog,
        "table": TABLE,
        "start": start,
        "until": until,
        **spec,
    }
    with open(log, "wb") as output:
        return subprocess.Popen(
            [sys.executable, str(CHILD), json.dumps(payload)],
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def wait_for(paths: list[Path], children: list[Any], logs: list[Path], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(path.exists() for path in paths):
        for child, log in zip(children, logs, strict=True):
            if child.poll() is not None:
                pytest.fail(
                    f"a child exited ({child.returncode}) early:\n{log.read_text()[-3000:]}"
                )
        if time.monotonic() > deadline:
            pytest.fail(f"no child reached its point within {timeout:.0f} s")
        time.sleep(0.05)


def stop(children: list[Any]) -> None:
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["mid-data-files", "before-commit", "metadata-written", "after-commit"]
)
def test_sigkill_leaves_readers_on_one_snapshot_the_rerun_heals_and_maintenance_cleans(
    sandbox: SandboxServer, local_lake: Lake, tmp_path: Path, point: str
) -> None:
    start, until = "2025-04-01", "2025-04-08"
    sink = local_lake.sink()
    extract(sandbox.url, sink, start, until)
    old = truth(sandbox.records, start, until)
    assert read_all(local_lake) == old
    location = table_metadata(local_lake)["location"]
    files_before = local_lake.files(location)

    # Late arrivals on every day and a deletion: the next run changes every day.
    template = sandbox.records[0]
    sandbox.configure(
        add_records=[
            {**template, "id": 8_000_000 + n, "sessionEndsOn": day}
            for n, day in enumerate(day_range(start, until))
        ],
        delete_ids=[old[0]["id"]],
    )
    new = truth(sandbox.records, start, until)

    marker, log = tmp_path / "marker", tmp_path / "child.log"
    chunk = {"chunk_rows": 5} if point == "mid-data-files" else {}
    child = spawn(local_lake, sandbox, start, until, log, hold=point, marker=str(marker), **chunk)
    try:
        wait_for([marker], [child], [log], timeout=60)
        during = read_all(local_lake)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        stop([child])
    assert child.returncode == -signal.SIGKILL

    committed = point == "after-commit"
    assert during == (new if committed else old)
    assert read_all(local_lake) == (new if committed else old)
    left = local_lake.files(location) - files_before
    orphans = left - referenced_files(local_lake, str(local_lake.metadata_location()))
    if committed:
        assert not orphans
    else:
        assert orphans, "the killed run should have left unreferenced files"
        assert any("/data/" in path for path in orphans)
        if point == "metadata-written":
            assert any(path.endswith(".metadata.json") for path in orphans)

    summary = extract(sandbox.url, sink, start, until)
    assert read_all(local_lake) == new
    if point == "mid-data-files":
        written = [path for path in orphans if "/data/" in path]
        assert len(written) < len(day_range(start, until)) <= summary["records"] // 5

    # An hour later, maintenance removes what the killed run left, and nothing the table needs.
    local_lake.age_files(location, hours=2)
    result = sink.maintain(retention=timedelta(hours=1), log=LOG)
    remaining = local_lake.files(location)
    assert not orphans & remaining
    assert result["orphan_files_removed"] >= len(orphans)
    assert remaining <= referenced_files(local_lake, str(local_lake.metadata_location()))
    assert read_all(local_lake) == new


@pytest.mark.slow
@pytest.mark.parametrize(
    "windows",
    [
        (("2025-03-01", "2025-03-20"), ("2025-03-10", "2025-04-01")),
        (("2025-03-01", "2025-03-15"), ("2025-03-15", "2025-04-01")),
    ],
    ids=["overlapping", "disjoint"],
)
def test_two_runs_committing_at_once_both_succeed_without_a_lost_or_doubled_row(
    sandbox: SandboxServer,
    local_lake: Lake,
    tmp_path: Path,
    windows: tuple[tuple[str, str], tuple[str, str]],
) -> None:
    start, until = windows[0][0], windows[1][1]
    extract(sandbox.url, local_lake.sink(), start, until)
    template = sandbox.records[0]
    sandbox.configure(
        add_records=[
            {**template, "id": 8_000_000 + n, "sessionEndsOn": day}
            for n, day in enumerate(day_range(start, until))
        ]
    )
    go = tmp_path / "go"
    ready = [tmp_path / "ready-0", tmp_path / "ready-1"]
    logs = [tmp_path / "child-0.log", tmp_path / "child-1.log"]
    children = [
        spawn(
            local_lake,
            sandbox,
            *window,
            logs[n],
            gates=[{"at": "before-commit", "ready": str(ready[n]), "go": str(go)}],
        )
        for n, window in enumerate(windows)
    ]
    try:
        # Both runs wrote their data files and built their commit on the same snapshot.
        wait_for(ready, children, logs, timeout=90)
        go.touch()
        for child in children:
            child.wait(timeout=90)
    finally:
        stop(children)
    outputs = [log.read_text() for log in logs]
    assert [child.returncode for child in children] == [0, 0], outputs

    got = read_all(local_lake)
    assert got == truth(sandbox.records, start, until)
    assert len({row["id"] for row in got}) == len(got)
    snapshots = table_metadata(local_lake)["snapshots"]
    assert len(snapshots) == 3, "the first run and each child's one commit"
    # The loser's commit failed once: re-based by pyiceberg when the windows are disjoint,
    # made again on the reloaded table by the sink when they overlap.
    retried = [text for text in outputs if "Commit failed due to a concurrent update" in text]
    assert len(retried) == 1, outputs
    again = "committing again on the new table version"
    if windows[0][1] > windows[1][0]:
        assert again in retried[0]
    else:
        assert again not in retried[0], "a commit outside the window's scope was made again"


@pytest.mark.slow
def test_two_first_runs_at_once_both_create_nothing_twice_and_succeed(
    sandbox: SandboxServer, local_lake: Lake, tmp_path: Path
) -> None:
    windows = [("2025-05-01", "2025-05-10"), ("2025-05-05", "2025-05-15")]
    logs = [tmp_path / "child-0.log", tmp_path / "child-1.log"]
    gates = {
        point: ([tmp_path / f"{point}-ready-{n}" for n in range(2)], tmp_path / f"{point}-go")
        for point in ("create-namespace", "create-table")
    }
    children = [
        spawn(
            local_lake,
            sandbox,
            *window,
            logs[n],
            gates=[
                {"at": point, "ready": str(ready[n]), "go": str(go)}
                for point, (ready, go) in gates.items()
            ],
        )
        for n, window in enumerate(windows)
    ]
    try:
        for ready, go in gates.values():
            # Both runs found no namespace (then no table), and create it at the same moment.
            wait_for(ready, children, logs, timeout=90)
            go.touch()
        for child in children:
            child.wait(timeout=90)
    finally:
        stop(children)
    outputs = [log.read_text() for log in logs]
    assert [child.returncode for child in children] == [0, 0], outputs
    assert read_all(local_lake) == truth(sandbox.records, "2025-05-01", "2025-05-15")
    assert sum("Created Iceberg table" in text for text in outputs) == 1


# --------------------------------------------------------------------------- the operator

CONN_ID = "iceberg_test"


def operator(**params: Any) -> RealizedTrainingsOperator:
    with DAG("lucca_iceberg", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        return RealizedTrainingsOperator(
            task_id="extract",
            file_format="iceberg",
            iceberg_table=params.pop("iceberg_table", TABLE),
            iceberg_conn_id=CONN_ID,
            session_end_from=params.pop("session_end_from", "2025-03-01"),
            session_end_until=params.pop("session_end_until", "2025-03-15"),
            **params,
        )


def set_connection(monkeypatch: pytest.MonkeyPatch, **connection: Any) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "generic", **connection})
    )


@pytest.mark.slow
@pytest.mark.parametrize("store", ["file", "s3"])
def test_the_operator_commits_the_window_to_the_table_of_its_connection(
    lucca_conn: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    store: str,
) -> None:
    if store == "s3":
        lake = request.getfixturevalue("s3_lake")
        extra = {"type": "sql", "uri": lake.catalog["uri"], "warehouse": lake.warehouse}
        extra["aws_conn_id"] = "aws_local"  # the Amazon connection gives the s3.* properties
    else:
        lake = request.getfixturevalue("local_lake")
        extra = lake.catalog
    set_connection(monkeypatch, extra=extra)
    op = operator()
    assert [outlet.uri for outlet in op.outlets] == [
        f"iceberg://{CONN_ID}/lucca/realized_trainings"
    ]

    summary = op.execute({"run_id": "manual__iceberg"})

    assert read_all_in(lake, CONN_ID) == truth(lucca_conn.records, "2025-03-01", "2025-03-15")
    metadata = json.loads(lake.read_bytes(str(lake.metadata_location(catalog=CONN_ID))))
    (snapshot,) = metadata["snapshots"]
    assert summary["table_version"] == snapshot["snapshot-id"]
    assert snapshot["summary"]["lucca.run_id"] == "manual__iceberg"
    assert summary["output_path"] == f"Iceberg table {TABLE} (catalog {CONN_ID})"
    assert metadata["location"].startswith(lake.warehouse)


def read_all_in(lake: Lake, catalog: str) -> list[dict[str, Any]]:
    """The three readers, on a table of the catalog named ``catalog``."""
    from pyiceberg.catalog import load_catalog

    loaded = load_catalog(catalog, **lake.catalog).load_table(TABLE)
    rows = by_id(loaded.scan().to_arrow().to_pylist())
    location = lake.metadata_location(catalog=catalog)
    assert by_id(_polars_rows(lake, str(location))) == rows
    return rows


def _polars_rows(lake: Lake, location: str) -> list[dict[str, Any]]:
    import polars as pl

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pl.exceptions.PerformanceWarning)
        frame = pl.scan_iceberg(location, storage_options=lake.s3_options or None).collect()
    return frame.to_dicts()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "table", ["lucca", "lucca.", ".t", "lucca.realized-trainings", "a b.c", 42]
)
def test_a_bad_table_identifier_fails_when_the_dag_is_parsed(table: object) -> None:
    with pytest.raises(LuccaConfigError, match=r"Invalid iceberg_table=.*namespace\.table"):
        operator(iceberg_table=table)


def test_an_output_path_with_iceberg_fails_when_the_dag_is_parsed() -> None:
    with pytest.raises(
        LuccaConfigError, match=r"output_path is not used with file_format='iceberg'"
    ):
        operator(output_path="file:///data/lucca")


def test_the_connection_becomes_catalog_properties(
    monkeypatch: pytest.MonkeyPatch, moto_s3: str, s3_bucket: str
) -> None:
    set_connection(
        monkeypatch,
        host="catalog.example.com",
        port=8181,
        schema="api/catalog",
        login="client-id",
        password="client-secret",
        extra={
            "warehouse": "lake",
            "rest-metrics-reporting-enabled": False,
            "s3.region": "eu-west-3",
        },
    )
    assert iceberg_catalog_properties(CONN_ID) == {
        "warehouse": "lake",
        "rest-metrics-reporting-enabled": "false",
        "s3.region": "eu-west-3",
        "uri": "https://catalog.example.com:8181/api/catalog",
        "credential": "client-id:client-secret",
    }

    set_connection(monkeypatch, host="http://127.0.0.1:8181/", password="a-bearer-token")
    assert iceberg_catalog_properties(CONN_ID) == {
        "uri": "http://127.0.0.1:8181",
        "token": "a-bearer-token",
    }

    # A SQL catalog keeps its own uri; login / password are not a REST credential there. The
    # Amazon connection's keys, region and endpoint become the s3.* properties, unless the extra
    # sets one itself.
    set_connection(
        monkeypatch,
        host="ignored.example.com",
        login="user",
        password="pass",
        extra={
            "type": "sql",
            "uri": "sqlite:////tmp/catalog.db",
            "warehouse": f"s3://{s3_bucket}/warehouse",
            "aws_conn_id": "aws_local",
            "s3.region": "eu-west-3",
        },
    )
    assert iceberg_catalog_properties(CONN_ID) == {
        "type": "sql",
        "uri": "sqlite:////tmp/catalog.db",
        "warehouse": f"s3://{s3_bucket}/warehouse",
        "s3.region": "eu-west-3",
        "s3.access-key-id": "test",
        "s3.secret-access-key": "test",
        "s3.endpoint": moto_s3,
    }


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        (None, r"connection 'iceberg_test' could not be read"),
        ({"extra": {"warehouse": "s3://lake"}}, r"'iceberg_test' does not describe an Iceberg"),
        ({"extra": {"type": "sql", "uri": {"nested": 1}}}, r"has a dict under 'uri'"),
        ({"extra": {"type": "sql", "aws_conn_id": 3}}, r"invalid 'aws_conn_id'"),
    ],
)
def test_a_wrong_connection_fails_before_any_request_naming_it(
    lucca_conn: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    connection: dict[str, Any] | None,
    message: str,
) -> None:
    if connection is not None:
        set_connection(monkeypatch, **connection)
    op = operator()
    with pytest.raises(LuccaConfigError, match=message) as raised:
        op.execute({"run_id": "manual__iceberg"})
    assert '"type": "sql", "uri": "sqlite:///' in str(raised.value)  # the expected form
    assert lucca_conn.stats()["requests"] == 0


@pytest.mark.filterwarnings("ignore:Deprecated in 0.8.0:DeprecationWarning")
@pytest.mark.parametrize("catalog", ["unreachable REST catalog", "unknown kind of uri"])
def test_a_catalog_that_cannot_load_fails_without_showing_its_secrets(
    lucca_conn: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    catalog: str,
) -> None:
    from tests.helpers import free_port

    secret, key = "s3cr3t-client-password", "another-s3cr3t-key"
    if catalog == "unreachable REST catalog":
        set_connection(
            monkeypatch,
            host=f"http://127.0.0.1:{free_port()}",
            login="client",
            password=secret,
            extra={"s3.secret-access-key": key},
        )
    else:  # pyiceberg's error quotes the uri
        uri = f"mysql://lucca:{secret}@db.example.com/iceberg"
        set_connection(monkeypatch, extra={"uri": uri, "s3.secret-access-key": key})
    op = operator()
    # A catalog that does not answer may come back (retried); a URI of an unknown kind will not.
    expected = LuccaStorageError if catalog == "unreachable REST catalog" else LuccaConfigError
    with pytest.raises(expected, match=r"catalog of connection 'iceberg_test'") as raised:
        op.execute({"run_id": "manual__iceberg"})
    assert lucca_conn.stats()["requests"] == 0
    for text in (str(raised.value), caplog.text, repr(op)):
        assert secret not in text
        assert key not in text


@pytest.mark.parametrize("mismatch", ["schema", "partitioning"])
def test_an_existing_table_that_does_not_fit_fails_before_any_request_naming_it(
    lucca_conn: SandboxServer, local_lake: Lake, monkeypatch: pytest.MonkeyPatch, mismatch: str
) -> None:
    import pyarrow as pa
    from pyiceberg.catalog import load_catalog

    from airflow_provider_lucca.extraction.schema import RecordSchema

    schema = RecordSchema(pa, partition_column=True).arrow
    if mismatch == "schema":
        index = schema.get_field_index("durationInHours")
        schema = schema.set(index, pa.field("durationInHours", pa.float64()))
    catalog = load_catalog(CONN_ID, **local_lake.catalog)
    catalog.create_namespace("lucca")
    catalog.create_table(TABLE, schema=schema)  # unpartitioned
    set_connection(monkeypatch, extra=local_lake.catalog)

    expected = "schema this provider cannot" if mismatch == "schema" else "not partitioned by"
    with pytest.raises(LuccaConfigError, match=rf"iceberg_table='{TABLE}' exists .*{expected}"):
        operator().execute({"run_id": "manual__iceberg"})
    assert lucca_conn.stats()["requests"] == 0


# --------------------------------------------------------------------------- maintenance


def live_files_by_day(lake: Lake) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in live_data_files(lake, table_metadata(lake)):
        day = path.split("session_end_on=")[1].split("/")[0]
        counts[day] = counts.get(day, 0) + 1
    return counts


def current_manifests(lake: Lake) -> int:
    metadata = table_metadata(lake)
    (snapshot,) = [
        s for s in metadata["snapshots"] if s["snapshot-id"] == metadata["current-snapshot-id"]
    ]
    return len(read_avro(lake, snapshot["manifest-list"]))


def daily_runs(url: str, sink: IcebergSink, first: str, days: int) -> None:
    """Daily runs with a 3-day lookback, as a schedule makes them."""
    for n in range(days):
        day = date.fromisoformat(first) + timedelta(n)
        extract(url, sink, day.isoformat(), (day + timedelta(1)).isoformat(), lookback_days=3)


@pytest.mark.slow
def test_maintenance_compacts_each_day_into_one_file_and_keeps_every_row(
    sandbox: SandboxServer, lake: Lake, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(iceberg_module, "CHUNK_ROWS", 2)  # days of several files
    sink = lake.sink()
    daily_runs(sandbox.url, sink, "2025-03-04", 4)
    before = read_all(lake)
    assert before == truth(sandbox.records, "2025-03-01", "2025-03-08")
    files_by_day = live_files_by_day(lake)
    assert max(files_by_day.values()) > 1
    assert current_manifests(lake) > 1
    # Runs carry no manifest whose every file was deleted (pyiceberg 0.12's overwrite did: two
    # more manifests per run, each read when planning any query).
    metadata = table_metadata(lake)
    current = metadata["current-snapshot-id"]
    (snapshot,) = [s for s in metadata["snapshots"] if s["snapshot-id"] == current]
    for manifest in read_avro(lake, snapshot["manifest-list"]):
        live = manifest["added_files_count"] + manifest["existing_files_count"]
        assert live > 0 or manifest["added_snapshot_id"] == current, manifest

    result = sink.maintain(retention=timedelta(days=7), log=LOG)

    assert read_all(lake) == before
    assert set(live_files_by_day(lake).values()) == {1}
    assert current_manifests(lake) == 1
    assert result["compacted_days"] == sum(1 for files in files_by_day.values() if files > 1)
    assert result["compacted_files"] == sum(files for files in files_by_day.values() if files > 1)
    assert result["expired_snapshots"] == result["orphan_files_removed"] == 0
    metadata = table_metadata(lake)
    assert metadata["snapshots"][-1]["summary"]["lucca.maintenance"] == "compaction"
    assert len(metadata["snapshots"]) == 5, "time travel kept within the retention"

    again = sink.maintain(retention=timedelta(days=7), log=LOG)
    assert again["compacted_days"] == again["merged_manifests"] == 0
    assert len(table_metadata(lake)["snapshots"]) == 5, "nothing to compact: no new snapshot"


@pytest.mark.slow
def test_maintenance_expires_snapshots_older_than_the_retention_keeping_the_current(
    sandbox: SandboxServer, lake: Lake
) -> None:
    from pyiceberg.catalog import load_catalog

    sink = lake.sink()
    daily_runs(sandbox.url, sink, "2025-03-04", 3)
    old = table_metadata(lake)["snapshots"][0]["snapshot-id"]
    assert sink.maintain(retention=timedelta(days=7), log=LOG)["expired_snapshots"] == 0
    snapshots = table_metadata(lake)["snapshots"]
    before = read_all(lake)

    result = sink.maintain(retention=timedelta(0), log=LOG)

    metadata = table_metadata(lake)
    assert [s["snapshot-id"] for s in metadata["snapshots"]] == [metadata["current-snapshot-id"]]
    assert result["expired_snapshots"] == len(snapshots) - 1
    assert read_all(lake) == before
    table = load_catalog(CATALOG, **lake.catalog).load_table(TABLE)
    assert table.snapshot_by_id(old) is None  # no time travel before the retention


@pytest.mark.slow
def test_maintenance_removes_old_unreferenced_files_only(
    sandbox: SandboxServer, local_lake: Lake
) -> None:
    sink = local_lake.sink()
    daily_runs(sandbox.url, sink, "2025-03-04", 3)
    location = table_metadata(local_lake)["location"]
    data = Path(urlsplit(location).path) / "data"
    old_orphan = data / "session_end_on=2025-03-04" / "00000-0-killed-run.parquet"
    young_orphan = data / "session_end_on=2025-03-05" / "00000-0-running-run.parquet"
    for orphan in (old_orphan, young_orphan):
        orphan.write_bytes(b"PAR1 not referenced by any snapshot")
    then = time.time() - 3 * 3600
    os.utime(old_orphan, (then, then))
    before = read_all(local_lake)

    # Retention 0 expires every older snapshot, so the files they replaced are unreferenced,
    # but they are minutes old: a run in flight could be writing such files.
    result = sink.maintain(retention=timedelta(0), log=LOG)
    assert result["orphan_files_removed"] == 1
    assert not old_orphan.exists()
    assert young_orphan.exists()
    assert read_all(local_lake) == before
    unreferenced = local_lake.files(location) - referenced_files(
        local_lake, str(local_lake.metadata_location())
    )
    assert len(unreferenced) > 1

    local_lake.age_files(location, hours=2)
    result = sink.maintain(retention=timedelta(hours=1), log=LOG)
    assert result["orphan_files_removed"] == len(unreferenced)
    assert local_lake.files(location) == referenced_files(
        local_lake, str(local_lake.metadata_location())
    )
    assert read_all(local_lake) == before


@pytest.mark.slow
def test_a_compaction_that_loses_to_a_run_starts_again_on_the_runs_snapshot(
    sandbox: SandboxServer,
    local_lake: Lake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pyiceberg.table import Transaction

    monkeypatch.setattr(iceberg_module, "CHUNK_ROWS", 2)
    sink = local_lake.sink()
    start, until = "2025-03-01", "2025-03-08"
    extract(sandbox.url, sink, start, until)
    assert max(live_files_by_day(local_lake).values()) > 1
    gone = [r["id"] for r in sandbox.records if start <= r["sessionEndsOn"] < "2025-03-04"]
    sandbox.configure(delete_ids=gone[: len(gone) // 2])

    original = Transaction.commit_transaction
    state = {"inside": False, "runs": 0}

    def run_first(self: Transaction) -> Any:
        # The compaction read the days and built its commit; a run commits before it does.
        if not state["inside"] and state["runs"] == 0 and "compaction" in str(self._updates):
            state["inside"], state["runs"] = True, 1
            extract(sandbox.url, local_lake.sink(), start, until)
            state["inside"] = False
        return original(self)

    monkeypatch.setattr(Transaction, "commit_transaction", run_first)
    result = sink.maintain(retention=timedelta(days=7), log=LOG)

    assert state["runs"] == 1
    assert "committing again on the new table version" in caplog.text
    assert read_all(local_lake) == truth(sandbox.records, start, until)
    assert set(live_files_by_day(local_lake).values()) == {1}
    assert result["compacted_days"] > 0
