"""The Delta Lake output, proved against the sandbox over HTTP, on a local disk and on S3 (moto).

The contract of a table is its snapshot, so every check reads the table through it, with three
independent readers: delta-rs (``DeltaTable.to_pyarrow_table``), polars (``pl.read_delta``) and
DuckDB (``delta_scan``, from the extension file of the ``duckdb-extension-delta`` wheel). On S3,
``delta_scan`` and its S3 secret need DuckDB's ``httpfs``: with the ``duckdb-extension-httpfs``
wheel installed it is loaded from its file; without it (DuckDB cannot download here), DuckDB reads
the snapshot's file list (``DeltaTable.file_uris()``) with ``read_parquet`` through an fsspec S3
filesystem. Each must equal the sandbox's truth row for row: every record once, exact decimals,
dates, the ``training`` struct, ``_extra``.

The expected rows are written out here from the sandbox's records (:func:`expected_row`), not
with the provider's schema code. Crashes and races run the extraction in a child process
(``tests/delta_child.py``) that stops at a named point until the test answers, or at an S3 request
that a proxy holds: no timing decides where a process dies or which run commits first.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import duckdb_extension_delta
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

deltalake = pytest.importorskip("deltalake")

from airflow_provider_lucca import __version__  # noqa: E402
from airflow_provider_lucca.client.errors import LuccaConfigError  # noqa: E402
from airflow_provider_lucca.extraction.errors import LuccaStorageError  # noqa: E402
from airflow_provider_lucca.extraction.realized_trainings import (  # noqa: E402
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink  # noqa: E402
from airflow_provider_lucca.extraction.window import DateWindow  # noqa: E402
from airflow_provider_lucca.operators.realized_trainings import (  # noqa: E402
    RealizedTrainingsOperator,
)
from airflow_provider_lucca.operators.table_sinks import (  # noqa: E402
    aws_storage_options,
    azure_storage_options,
    delta_location,
    gcp_storage_options,
)
from lucca_sandbox import BOUNDS, SandboxConfig, SandboxServer  # noqa: E402
from tests.helpers import (  # noqa: E402
    RECORD_FIELDS,
    SANDBOX_KEY,
    client_for,
    moto_client,
    moto_options,
)
from tests.s3_fault_proxy import S3FaultProxy  # noqa: E402

LOG = logging.getLogger("tests.delta_sink")
CHILD = Path(__file__).resolve().parent / "delta_child.py"


def duckdb_extension(package: Any, name: str) -> Path:
    """The extension file a ``duckdb-extension-*`` wheel ships for this DuckDB."""
    directory = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}"
    return directory / f"{name}.duckdb_extension"


DELTA_EXTENSION = duckdb_extension(duckdb_extension_delta, "delta")
try:
    import duckdb_extension_httpfs
except ImportError:  # not a dependency yet: S3 tables are read with read_parquet, see above
    HTTPFS_EXTENSION: Path | None = None
else:
    HTTPFS_EXTENSION = duckdb_extension(duckdb_extension_httpfs, "httpfs")
TRAINING_FIELDS = ("id", "title", "categoryId", "providerUrl", "level")
CHILD_TIMEOUT = 120.0

Row = dict[str, Any]


# --------------------------------------------------------------------------- the truth


def d(text: str) -> date:
    return date.fromisoformat(text)


def days(start: str, until: str) -> list[str]:
    first = d(start)
    return [(first + timedelta(n)).isoformat() for n in range((d(until) - first).days)]


def cents(value: int | float) -> Decimal:
    """The exact decimal(12, 2) of a JSON number: its JSON text, never float arithmetic."""
    exact = Decimal(json.dumps(value))
    assert exact == exact.quantize(Decimal("0.01")), value
    return exact.quantize(Decimal("0.01"))


def expected_row(record: dict[str, Any]) -> Row:
    """The row a spec-shaped record becomes (the sandbox generates only those; misfits are
    spelled out by hand in :data:`ODD_ROWS`)."""
    assert set(record) <= set(RECORD_FIELDS), record
    training = record.get("training")
    starts = record.get("sessionStartsOn")
    duration = record.get("durationInHours")
    return {
        "id": record["id"],
        "ownerId": record.get("ownerId"),
        "training": None
        if training is None
        else {name: training.get(name) for name in TRAINING_FIELDS},
        "trainingDemandId": record.get("trainingDemandId"),
        "sessionId": record.get("sessionId"),
        "sessionStartsOn": None if starts is None else d(starts),
        "sessionEndsOn": d(record["sessionEndsOn"]),
        "hasAttended": record.get("hasAttended"),
        "durationInHours": None if duration is None else cents(duration),
        "_extra": None,
        "session_end_on": d(record["sessionEndsOn"]),
    }


ODD_DAY = "2025-03-12"
FRENCH = {
    "id": 45,
    "title": "Mastering French: From Basics to Fluency",
    "categoryId": 1,
    "providerUrl": "https://elan-francais.fr",
    "level": "Beginner",
}
#: Records that stress exactness, each with the row it must become: decimals at the edges of
#: decimal(12, 2), explicit nulls, a field Lucca may add later, values that do not fit a column.
ODD_RECORDS: list[tuple[dict[str, Any], Row]] = []


def _odd(record: dict[str, Any], **row: Any) -> None:
    base: Row = {
        "id": record["id"],
        "ownerId": 416,
        "training": FRENCH,
        "trainingDemandId": None,
        "sessionId": None,
        "sessionStartsOn": d("2025-03-11"),
        "sessionEndsOn": d(ODD_DAY),
        "hasAttended": True,
        "durationInHours": None,
        "_extra": None,
        "session_end_on": d(ODD_DAY),
    }
    common = {"ownerId": 416, "sessionStartsOn": "2025-03-11", "sessionEndsOn": ODD_DAY}
    ODD_RECORDS.append(({**common, "training": FRENCH, "hasAttended": True, **record}, base | row))


_odd({"id": 910001, "durationInHours": 2.35}, durationInHours=Decimal("2.35"))
_odd({"id": 910002, "durationInHours": 0.1}, durationInHours=Decimal("0.10"))
_odd({"id": 910003, "durationInHours": 9999999999.99}, durationInHours=Decimal("9999999999.99"))
_odd({"id": 910004, "durationInHours": 14, "trainingDemandId": 4356, "sessionId": 12},
     durationInHours=Decimal("14.00"), trainingDemandId=4356, sessionId=12)  # fmt: skip
_odd(
    {"id": 910005, "durationInHours": 1.005, "hasAttended": False},
    hasAttended=False,
    _extra={"durationInHours": 1.005},  # three decimals: no decimal(12, 2) holds it
)
_odd(
    {"id": 910006, "durationInHours": 1, "customField": {"note": "déjà vu ✓", "n": [1, 2.5]}},
    durationInHours=Decimal("1.00"),
    _extra={"customField": {"note": "déjà vu ✓", "n": [1, 2.5]}},
)
_odd(
    {"id": 910007, "ownerId": "416", "training": {"id": 45, "title": 7}, "durationInHours": 3},
    ownerId=None,
    training=None,
    durationInHours=Decimal("3.00"),
    _extra={"ownerId": "416", "training": {"id": 45, "title": 7}},
)
_odd(
    {"id": 910008, "training": {"id": 3}, "durationInHours": None, "sessionStartsOn": "soon"},
    training={"id": 3, "title": None, "categoryId": None, "providerUrl": None, "level": None},
    sessionStartsOn=None,
    _extra={"sessionStartsOn": "soon"},
)
ODD_IDS = {record["id"] for record, _ in ODD_RECORDS}


def truth(
    records: list[dict[str, Any]],
    covered: set[str] | tuple[str, str],
    **filters: Any,
) -> list[Row]:
    """The rows the table must hold: the records on the covered days (a set of ISO days, or a
    half-open ``(start, until)``), in ``(day, id)`` order."""
    wanted = set(days(*covered)) if isinstance(covered, tuple) else covered
    odd = {record["id"]: row for record, row in ODD_RECORDS}
    owners, attended = filters.get("owner_ids"), filters.get("has_attended")
    rows = []
    for record in records:
        if record["sessionEndsOn"] not in wanted:
            continue
        if owners is not None and record.get("ownerId") not in owners:
            continue
        if attended is not None and record.get("hasAttended", True) is not attended:
            continue
        rows.append(odd[record["id"]] if record["id"] in odd else expected_row(record))
    return canonical(rows)


def canonical(rows: list[Row]) -> list[Row]:
    """Rows in ``(day, id)`` order; a decimal compared with its scale ('14.00' is not 14.0 nor
    '14'), ``_extra`` as the JSON value it holds."""

    def one(row: Row) -> Row:
        out = dict(row)
        for key, value in row.items():
            if isinstance(value, Decimal):
                out[key] = ("decimal", str(value))
            elif key == "_extra" and isinstance(value, str):
                out[key] = json.loads(value)
        return out

    return sorted(map(one, rows), key=lambda r: (r["session_end_on"], r["id"]))


# --------------------------------------------------------------------------- the stores


@dataclass
class Store:
    """A table's location, and a view of it that no table library gives: every object there."""

    name: str
    uri: str
    options: dict[str, str] = field(default_factory=dict)
    s3: Any = None  # a boto3 client straight to moto, for an S3 table
    bucket: str = ""
    prefix: str = ""

    def names(self) -> set[str]:
        """Every file under the table root, relative to it, the log included."""
        if self.s3 is None:
            root = Path(self.uri)
            return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix + "/"
        )
        return {
            item["Key"][len(self.prefix) + 1 :]
            for page in pages
            for item in page.get("Contents", [])
        }

    def read(self, name: str) -> bytes:
        if self.s3 is None:
            return (Path(self.uri) / name).read_bytes()
        key = f"{self.prefix}/{name}"
        return self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]

    def data_files(self) -> set[str]:
        return {name for name in self.names() if not name.startswith("_delta_log/")}

    def commits(self) -> list[Row]:
        """Each version's commitInfo, read from the log's JSON files (version order)."""
        result = []
        for name in sorted(self.names()):
            stem = name.removeprefix("_delta_log/").removesuffix(".json")
            if not (name.startswith("_delta_log/") and name.endswith(".json") and stem.isdigit()):
                continue
            lines = self.read(name).decode().splitlines()
            info = next(a["commitInfo"] for a in map(json.loads, lines) if "commitInfo" in a)
            result.append({"version": int(stem), **info})
        return result

    def table(self) -> Any:
        return deltalake.DeltaTable(self.uri, storage_options=self.options or None)

    def live_files(self) -> set[str]:
        return {uri[len(self.uri) + 1 :] for uri in self.table().file_uris()}

    def sink(self) -> DeltaSink:
        return DeltaSink(self.uri, self.options)


@pytest.fixture
def file_store(tmp_path: Path) -> Store:
    return Store("file", str(tmp_path / "lake" / "realized_trainings"))


@pytest.fixture
def s3_store(s3_bucket: str, moto_s3: str) -> Store:
    prefix = "lucca/realized_trainings"
    return Store(
        "s3",
        f"s3://{s3_bucket}/{prefix}",
        moto_options(moto_s3),
        s3=moto_client(moto_s3),
        bucket=s3_bucket,
        prefix=prefix,
    )


@pytest.fixture(params=["file", "s3"])
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- three readers


def read_with_deltalake(store: Store) -> list[Row]:
    return canonical(store.table().to_pyarrow_table().to_pylist())


def read_with_polars(store: Store) -> list[Row]:
    frame = pl.read_delta(store.uri, storage_options=store.options or None)
    return canonical(frame.to_dicts())


@functools.cache
def duckdb_with_delta() -> duckdb.DuckDBPyConnection:
    """One DuckDB for the module: loading the delta extension takes ~2 s."""
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    if HTTPFS_EXTENSION is not None:
        con.execute(f"LOAD '{HTTPFS_EXTENSION}'")
    con.execute(f"LOAD '{DELTA_EXTENSION}'")
    return con


def read_with_duckdb(store: Store) -> list[Row]:
    con = duckdb_with_delta().cursor()
    try:
        if store.s3 is None:
            cursor = con.execute("SELECT * FROM delta_scan(?)", [store.uri])
        elif HTTPFS_EXTENSION is not None:
            options = store.options
            endpoint = options["AWS_ENDPOINT_URL"].removeprefix("http://")
            con.execute(
                "CREATE OR REPLACE SECRET moto (TYPE s3, KEY_ID ?, SECRET ?, REGION ?, "
                "ENDPOINT ?, URL_STYLE 'path', USE_SSL false)",
                [
                    options["AWS_ACCESS_KEY_ID"],
                    options["AWS_SECRET_ACCESS_KEY"],
                    options["AWS_REGION"],
                    endpoint,
                ],
            )
            cursor = con.execute("SELECT * FROM delta_scan(?)", [store.uri])
        else:
            import s3fs

            if "s3" in con.list_filesystems():
                con.unregister_filesystem("s3")
            con.register_filesystem(
                s3fs.S3FileSystem(
                    key=store.options["AWS_ACCESS_KEY_ID"],
                    secret=store.options["AWS_SECRET_ACCESS_KEY"],
                    endpoint_url=store.options["AWS_ENDPOINT_URL"],
                    client_kwargs={"region_name": store.options["AWS_REGION"]},
                    skip_instance_cache=True,
                )
            )
            files = store.table().file_uris()
            if not files:
                return []
            cursor = con.execute("SELECT * FROM read_parquet(?, hive_partitioning = true)", [files])
        names = [column[0] for column in cursor.description]
        return canonical([dict(zip(names, values, strict=True)) for values in cursor.fetchall()])
    finally:
        con.close()


READERS: dict[str, Callable[[Store], list[Row]]] = {
    "deltalake": read_with_deltalake,
    "polars": read_with_polars,
    "duckdb": read_with_duckdb,
}


def assert_every_reader_sees(store: Store, want: list[Row]) -> None:
    assert want, "a test of an empty table proves little"
    ids = [(row["session_end_on"], row["id"]) for row in want]
    assert len(ids) == len(set(ids))
    for name, read in READERS.items():
        got = read(store)
        assert len(got) == len(want), name
        assert got == want, name


# --------------------------------------------------------------------------- runs


def extract(
    store: Store, url: str, start: str, until: str, *, lookback: int = 0, **options: Any
) -> dict[str, Any]:
    """One run, in this process, through the Delta sink."""
    request = ExtractionRequest(window=DateWindow(d(start), d(until)), lookback_days=lookback)
    with client_for(url, api_key=SANDBOX_KEY, page_size=100) as client:
        summary = extract_realized_trainings(client, request, store.sink(), log=LOG, **options)
    return dict(summary)


def run_operator(output_path: str, start: str, until: str, **params: Any) -> dict[str, Any]:
    """One run of the operator, as a worker runs it (``lucca_default`` is the sandbox)."""
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=output_path,
        file_format="delta",
        session_end_from=start,
        session_end_until=until,
        **params,
    )
    return dict(op.execute({"run_id": f"manual__{start}_{until}"}))  # type: ignore[arg-type]


def change_every_day(sandbox: SandboxServer, start: str, until: str, base_id: int) -> None:
    """A late record on every day of ``[start, until)`` and the first record of its second day
    deleted: the next run changes every partition."""
    template = next(r for r in sandbox.records if r["id"] not in ODD_IDS)
    second = days(start, until)[1]
    deleted = min(r["id"] for r in sandbox.records if r["sessionEndsOn"] == second)
    sandbox.configure(
        add_records=[
            {**template, "id": base_id + n, "sessionEndsOn": day}
            for n, day in enumerate(days(start, until))
        ],
        delete_ids=[deleted],
    )


# --------------------------------------------------------------------------- 1. three readers


@pytest.mark.slow
def test_three_readers_see_the_sandbox_row_for_row_through_the_operator(
    lucca_conn: SandboxServer, store: Store
) -> None:
    """Two operator runs with overlapping windows and a lookback, to a local path and to S3
    through the ``aws_local`` connection: the table is every record once, decimals exact,
    misfits in ``_extra``, whatever engine reads it."""
    lucca_conn.configure(add_records=[record for record, _ in ODD_RECORDS])
    if store.s3 is None:
        output_path = f"file://{store.uri}"
    else:
        output_path = f"s3://aws_local@{store.bucket}/{store.prefix}"

    first = run_operator(output_path, "2025-03-01", "2025-03-20")
    second = run_operator(output_path, "2025-03-15", "2025-04-01", lookback_days=3)

    want = truth(lucca_conn.records, ("2025-03-01", "2025-04-01"))
    assert len(want) > 150
    assert {row["id"] for row in want} >= ODD_IDS
    assert_every_reader_sees(store, want)
    assert (first["table_version"], second["table_version"]) == (0, 1)
    assert second["extracted_window"] == {"from": "2025-03-12", "until": "2025-04-01"}
    assert (
        sum(second["partitions"].values())
        == second["records"]
        == len([row for row in want if row["session_end_on"] >= d("2025-03-12")])
    )
    assert first["output_path"] == second["output_path"] == f"Delta table {store.uri}"
    # The table is where output_path says, and its log is the two commits of the two runs.
    commits = store.commits()
    assert [c["version"] for c in commits] == [0, 1]
    assert [c["lucca.run_token"] for c in commits] == [first["run_token"], second["run_token"]]


# --------------------------------------------------------------------------- 2. property


@pytest.fixture(scope="module")
def property_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(records=0)) as server:
        yield server


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    size=st.integers(0, 300),
    bounds=st.sampled_from(BOUNDS),
    data=st.data(),
)
def test_any_split_reruns_and_lookbacks_under_either_bounds_reading_commit_the_truth_once(
    property_sandbox: SandboxServer, seed: int, size: int, bounds: str, data: st.DataObject
) -> None:
    first = date(2025, 2, 1) + timedelta(data.draw(st.integers(0, 60), label="offset"))
    span = data.draw(st.integers(2, 40), label="span")
    cuts = sorted(data.draw(st.sets(st.integers(1, span - 1), max_size=5), label="cuts"))
    edges = [first + timedelta(n) for n in (0, *cuts, span)]
    windows = [(a.isoformat(), b.isoformat()) for a, b in itertools.pairwise(edges)]
    reruns = data.draw(st.lists(st.sampled_from(windows), max_size=2), label="reruns")
    order = data.draw(st.permutations(windows + reruns), label="order")
    lookbacks = [data.draw(st.sampled_from([0, 0, 1, 3]), label="lookback") for _ in order]

    # Random records over a wider range, plus one on each side of every window edge.
    sample = {"ownerId": 1, "training": {"id": 3}, "hasAttended": True, "durationInHours": 0.01}
    edge_records = [
        {**sample, "id": 9_000_000 + n, "sessionEndsOn": day.isoformat()}
        for n, day in enumerate(e + timedelta(shift) for e in edges for shift in (-1, 0))
    ]
    property_sandbox.configure(
        seed=seed,
        records=size,
        start="2025-01-20",
        end="2025-05-31",
        bounds=bounds,
        add_records=edge_records,
    )
    covered: set[str] = set()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store("file", f"{tmp}/table")
        for (start, until), lookback in zip(order, lookbacks, strict=True):
            summary = extract(store, property_sandbox.url, start, until, lookback=lookback)
            covered |= set(days(summary["extracted_window"]["from"], until))
        want = truth(property_sandbox.records, covered)
        assert read_with_deltalake(store) == want
        assert read_with_duckdb(store) == want
        assert len(store.commits()) == len(order)


# --------------------------------------------------------------------------- 3. emptied days


@pytest.mark.slow
def test_days_left_without_records_lose_their_rows_and_history_names_each_run(
    lucca_conn: SandboxServer, file_store: Store
) -> None:
    sandbox, store = lucca_conn, file_store
    start, until = "2025-03-01", "2025-03-08"
    first = extract(store, sandbox.url, start, until, run_id="scheduled__first")
    emptied = "2025-03-03"
    removed = [r["id"] for r in sandbox.records if r["sessionEndsOn"] in (emptied, "2025-03-04")]
    assert len(removed) > 1
    added = {**sandbox.records[5], "id": 800002, "sessionEndsOn": "2025-03-06"}
    sandbox.configure(delete_ids=removed, add_records=[added])

    output_path = f"file://{store.uri}"
    second = run_operator(output_path, "2025-03-05", until, lookback_days=4)

    want = truth(sandbox.records, (start, until))
    assert_every_reader_sees(store, want)
    assert not [row for row in want if row["session_end_on"] in (d(emptied), d("2025-03-04"))]
    assert second["partitions"][emptied] == second["partitions"]["2025-03-04"] == 0
    assert 800002 in {row["id"] for row in want}

    history = store.table().history()
    assert [entry["version"] for entry in history] == [1, 0]
    latest, earliest = history
    assert latest["operationParameters"]["mode"] == "Overwrite"
    assert {key: value for key, value in latest.items() if key.startswith("lucca.")} == {
        "lucca.dataset": "lucca.realized_trainings",
        "lucca.window_from": "2025-03-01",
        "lucca.window_until": "2025-03-08",
        "lucca.requested_from": "2025-03-05",
        "lucca.lookback_days": "4",
        "lucca.filters": json.dumps(
            {"has_attended": None, "owner_ids": None, "training_ids": None}, sort_keys=True
        ),
        "lucca.api_reported_count": str(second["reported_count"]),
        "lucca.api_received": str(second["received"]),
        "lucca.records": str(second["records"]),
        "lucca.run_id": f"manual__2025-03-05_{until}",
        "lucca.run_token": second["run_token"],
        "lucca.extracted_at": latest["lucca.extracted_at"],
        "lucca.provider_version": __version__,
    }
    assert second["records"] == len(want)
    assert earliest["lucca.run_id"] == "scheduled__first"
    assert earliest["lucca.run_token"] == first["run_token"]
    assert earliest["lucca.window_from"] == start
    assert earliest["lucca.lookback_days"] == "0"


def test_a_filtered_run_says_so_in_the_history_and_holds_only_what_it_asked_for(
    sandbox: SandboxServer, file_store: Store
) -> None:
    start, until = "2025-03-01", "2025-03-15"
    owners = sorted({r["ownerId"] for r in sandbox.records if start <= r["sessionEndsOn"] < until})
    owners = owners[::2]
    request = ExtractionRequest(
        window=DateWindow(d(start), d(until)), owner_ids=tuple(owners), has_attended=True
    )
    with client_for(sandbox.url, api_key=SANDBOX_KEY, page_size=100) as client:
        summary = extract_realized_trainings(client, request, file_store.sink(), log=LOG)
    want = truth(sandbox.records, (start, until), owner_ids=owners, has_attended=True)
    assert want
    assert read_with_deltalake(file_store) == want
    (entry,) = file_store.table().history()
    assert json.loads(entry["lucca.filters"]) == {
        "owner_ids": owners,
        "has_attended": True,
        "training_ids": None,
    }
    assert entry["lucca.records"] == str(summary["records"]) == str(len(want))


# --------------------------------------------------------------------------- children


@dataclass
class Child:
    """A run in a child process that stops where it was told and goes on when answered."""

    process: subprocess.Popen[str]
    stderr: Path

    @classmethod
    def start(cls, tmp_path: Path, name: str, **spec: Any) -> Child:
        stderr = tmp_path / f"{name}.stderr"
        with open(stderr, "w") as errors:
            process = subprocess.Popen(
                [sys.executable, str(CHILD), json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
            )
        return cls(process, stderr)

    def message(self, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
        """The child's next line on stdout (it flushes each one)."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            self.process.wait(timeout=10)
            raise AssertionError(
                f"the child said nothing (exit {self.process.returncode}):\n{self.log()}"
            )
        return json.loads(line)  # type: ignore[no-any-return]

    def wait_at(self, point: str) -> None:
        message = self.message()
        assert message.get("at") == point, (message, self.log())

    def go(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def summary(self) -> dict[str, Any]:
        message = self.message()
        assert "summary" in message, (message, self.log())
        assert self.process.wait(timeout=CHILD_TIMEOUT) == 0, self.log()
        return message["summary"]  # type: ignore[no-any-return]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=10) == -signal.SIGKILL

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def log(self) -> str:
        return self.stderr.read_text()


def child_spec(store: Store, sandbox: SandboxServer, start: str, until: str, **spec: Any) -> Any:
    return {
        "url": sandbox.url,
        "api_key": SANDBOX_KEY,
        "uri": store.uri,
        "storage_options": store.options,
        "start": start,
        "until": until,
        **spec,
    }


class HeldRequest:
    """A proxy rule that holds the first matching S3 request until released, then drops it:
    the child is stuck exactly there (the requests after it wait behind the proxy's lock)."""

    def __init__(self, matches: Callable[[str, str, int], bool]) -> None:
        self.matches = matches
        self.reached = threading.Event()
        self.release = threading.Event()
        self.data_puts = 0

    def __call__(self, method: str, path: str) -> str | None:
        if self.reached.is_set():
            return "drop"  # what the dead child had sent behind the held request
        self.data_puts += data_put(method, path)
        if not self.matches(method, path, self.data_puts):
            return None
        self.reached.set()
        self.release.wait(timeout=CHILD_TIMEOUT)
        return "drop"


def data_put(method: str, path: str) -> bool:
    return method == "PUT" and path.split("?")[0].endswith(".parquet")


def log_put(method: str, path: str) -> bool:
    return method == "PUT" and "/_delta_log/" in path and path.split("?")[0].endswith(".json")


HOLDS: dict[str, Callable[[str, str, int], bool]] = {
    # The second data file of the run: exactly one is in the store, none in the log.
    "mid-upload": lambda method, path, number: data_put(method, path) and number == 2,
    # The log entry: every data file is in the store, the commit not.
    "before-log": lambda method, path, number: log_put(method, path),
}


# --------------------------------------------------------------------------- 4. SIGKILL


KILL_CASES = [
    ("file", "mid-stream"),
    ("file", "after-commit"),
    ("s3", "mid-stream"),
    ("s3", "mid-upload"),
    ("s3", "before-log"),
    ("s3", "after-commit"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "point"), KILL_CASES, ids=["-".join(c) for c in KILL_CASES])
def test_sigkill_during_write_or_commit_leaves_readers_on_a_whole_version_and_rerun_heals(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str, point: str
) -> None:
    """Killed while streaming, while uploading, before its log entry: every reader sees the
    previous version row for row. Killed right after its commit: every reader sees the new one
    whole. The re-run heals, and ``vacuum`` leaves exactly the current version's files."""
    store: Store = request.getfixturevalue(f"{kind}_store")
    # mid-stream: days big enough that the run is still streaming batches when it is held.
    big = point == "mid-stream"
    config = (
        SandboxConfig(records=10_000, start=date(2025, 4, 1), end=date(2025, 4, 2))
        if big
        else SandboxConfig(records=2000)
    )
    start, until = ("2025-04-01", "2025-04-03") if big else ("2025-04-01", "2025-04-15")
    with SandboxServer(config) as sandbox, contextlib.ExitStack() as stack:
        extract(store, sandbox.url, start, until)
        old = truth(sandbox.records, (start, until))
        old_files = store.data_files()
        change_every_day(sandbox, start, until, base_id=8_000_000)
        new = truth(sandbox.records, (start, until))
        assert old != new

        hold = HeldRequest(HOLDS.get(point, lambda *_: False))
        options = store.options
        if point in HOLDS:
            proxy = stack.enter_context(S3FaultProxy(store.options["AWS_ENDPOINT_URL"]))
            proxy.rule = hold
            options = {**options, "AWS_ENDPOINT_URL": proxy.url}
        spec = child_spec(store, sandbox, start, until, point=point, batches=2, run_id="killed")
        child = Child.start(tmp_path, "killed", **{**spec, "storage_options": options})
        try:
            if point in HOLDS:
                assert hold.reached.wait(CHILD_TIMEOUT), child.log()
            else:
                child.wait_at(point)
            # mid-stream: the day files are staged on local disk; none is in the table yet.
            child.kill()
        finally:
            hold.release.set()
            child.stop()

        written = store.data_files() - old_files
        after_commit = point == "after-commit"
        assert_every_reader_sees(store, new if after_commit else old)
        commits = store.commits()
        assert [c["lucca.run_id"] for c in commits] == ["", "killed"] if after_commit else [""]
        if point == "mid-upload":
            assert len(written) == 1, written
        if point == "mid-stream":
            # Still staging its day files on local disk: nothing of it reached the table.
            assert not written
        elif not after_commit:
            assert written, "the killed run should have left data files outside the log"
            assert not written & store.live_files()

        summary = extract(store, sandbox.url, start, until)
        assert read_with_deltalake(store) == new
        assert summary["table_version"] == len(commits)
        assert store.data_files() >= written  # nothing removes them but vacuum

        # full=True: the default ("lite") vacuum deletes only files that a commit removed, never
        # the files of a run killed before its commit, which no commit ever listed.
        removed = store.table().vacuum(
            retention_hours=0, enforce_retention_duration=False, dry_run=False, full=True
        )
        # A file the killed run was still writing to a local table is object_store's staging
        # file "<name>.parquet#<n>", which vacuum does not take for a data file.
        staging = {name for name in written if not name.endswith(".parquet")}
        assert set(removed) >= (written - staging) | old_files
        assert store.data_files() - staging == store.live_files()
        assert not ((written - staging) | old_files) & store.data_files()
        assert_every_reader_sees(store, new)
        if staging:
            pytest.xfail(f"vacuum leaves what a killed run was writing: {sorted(staging)}")


# --------------------------------------------------------------------------- 5. two writers


RACE_CASES = ["overlap", "new-table-found-none", "new-table-writing", "disjoint", "together"]


@pytest.mark.slow
@pytest.mark.parametrize("case", RACE_CASES)
def test_two_processes_committing_at_once_lose_and_double_nothing(
    sandbox: SandboxServer, store: Store, tmp_path: Path, case: str
) -> None:
    """Both runs read the window and hold the table's current version, then both stop.

    ``overlap``: both stop right before committing; A commits, then B commits on its stale
    version: delta-rs refuses it (CommitFailedError) and the sink commits again on the new
    version. ``new-table-found-none``: the same before any table exists: B found none, A
    creates it, and B must replace only its window on it (written by URI without the window's
    predicate, it replaced A's rows on every day). ``new-table-writing``: no table yet, both
    stop while streaming rows; A creates the table, then B goes on (through
    ``write_deltalake``, whose creating commit delta-rs rebased onto A's table without a
    conflict check, the common days had both runs' rows). ``disjoint``: windows without a
    common day.
    ``together``: no table yet, both released at once. Every case: two commits, the table is
    the truth, no row twice."""
    span = ("2025-03-01", "2025-03-21")
    windows = {
        "disjoint": [("2025-03-01", "2025-03-08"), ("2025-03-10", "2025-03-21")],
    }.get(case, [("2025-03-01", "2025-03-13"), ("2025-03-08", "2025-03-21")])
    new_table = case.startswith("new-table") or case == "together"
    barrier = ("overlap", "new-table-found-none", "disjoint")
    point = "before-commit" if case in barrier else "in-stream"
    if not new_table:
        extract(store, sandbox.url, *span)
    base = len(store.commits())
    before = list(sandbox.records)
    change_every_day(sandbox, *span, base_id=8_100_000)

    children = [
        Child.start(
            tmp_path,
            name,
            **child_spec(store, sandbox, *window, point=point, batches=1, run_id=name),
        )
        for name, window in zip("AB", windows, strict=True)
    ]
    try:
        for child in children:
            child.wait_at(point)  # both have read, both hold the same table version
        first, second = children
        if case == "together":
            first.go()
            second.go()
            summaries = [first.summary(), second.summary()]
        else:
            first.go()
            summaries = [first.summary()]
            second.go()  # on the version it opened before A's commit
            summaries.append(second.summary())
    finally:
        for child in children:
            child.stop()

    # The runs' days hold the new records; days between disjoint windows, the first run's.
    rerun = set(days(*windows[0])) | set(days(*windows[1]))
    untouched = set(days(*span)) - rerun
    want = canonical(truth(sandbox.records, rerun) + truth(before, untouched))
    assert_every_reader_sees(store, want)
    commits = store.commits()[base:]
    assert sorted(c["lucca.run_id"] for c in commits) == ["A", "B"]
    assert sorted(s["table_version"] for s in summaries) == [base, base + 1]
    for summary in summaries:
        (mine,) = [c for c in commits if c["lucca.run_token"] == summary["run_token"]]
        assert mine["version"] == summary["table_version"]
    retried = [c.log().count("Another writer committed") for c in children]
    if case == "overlap":
        assert retried == [0, 1], [c.log() for c in children]
    elif case in ("disjoint", "together"):
        assert sum(retried) <= 1, [c.log() for c in children]
    else:
        # Whether B's creation is made again depends on when the sink reads the table's state.
        assert retried in ([0, 0], [0, 1]), [c.log() for c in children]


# --------------------------------------------------------------------------- 6. connections


def aws_conn(
    monkeypatch: pytest.MonkeyPatch, name: str, endpoint: str | None, **extra: Any
) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{name.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": extra.pop("login", "AKIATESTKEY"),
                "password": extra.pop("password", "test-secret"),
                "extra": {
                    **({"endpoint_url": endpoint} if endpoint else {}),
                    "region_name": "eu-west-3",
                    **extra,
                },
            }
        ),
    )


def test_s3_url_maps_the_connection_to_delta_rs_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aws_conn(monkeypatch, "aws_minio", "http://127.0.0.1:9000")
    assert delta_location("s3://aws_minio@bucket/lucca/rt") == (
        "s3://bucket/lucca/rt",
        {
            "AWS_ACCESS_KEY_ID": "AKIATESTKEY",
            "AWS_SECRET_ACCESS_KEY": "test-secret",
            "AWS_REGION": "eu-west-3",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_ALLOW_HTTP": "true",
        },
    )
    aws_conn(monkeypatch, "aws_sts", "https://s3.example.net", aws_session_token="FwoGZXIvYXdz")
    uri, options = delta_location("s3a://aws_sts@bucket/x")
    assert uri == "s3://bucket/x"
    assert options["AWS_SESSION_TOKEN"] == "FwoGZXIvYXdz"
    assert options["AWS_ENDPOINT_URL"] == "https://s3.example.net"
    assert "AWS_ALLOW_HTTP" not in options  # TLS endpoints stay TLS-only
    aws_conn(monkeypatch, "aws_plain", None)
    assert "AWS_ENDPOINT_URL" not in aws_storage_options("aws_plain")
    # Without a connection id delta-rs finds credentials itself (environment, instance role).
    assert delta_location("s3://bucket/x") == ("s3://bucket/x", {})
    assert delta_location("file:///data/lucca/rt") == ("/data/lucca/rt", {})


def test_gcs_and_azure_urls_map_their_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    key = {"type": "service_account", "project_id": "p", "private_key_id": "k1"}
    for name, extra in {
        "gcp_dict": {"keyfile_dict": key},
        "gcp_text": {"keyfile_dict": json.dumps(key)},
        "gcp_path": {"key_path": "/secrets/sa.json"},
        "gcp_old": {"extra__google_cloud_platform__key_path": "/secrets/old.json"},
        "gcp_adc": {"project": "p"},
    }.items():
        conn = {"conn_type": "google_cloud_platform", "extra": extra}
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn))
    uri, options = delta_location("gs://gcp_dict@bucket/lucca/rt")
    assert uri == "gs://bucket/lucca/rt"
    assert json.loads(options.pop("google_service_account_key")) == key
    assert options == {}
    assert json.loads(gcp_storage_options("gcp_text")["google_service_account_key"]) == key
    assert gcp_storage_options("gcp_path") == {"google_service_account": "/secrets/sa.json"}
    assert gcp_storage_options("gcp_old") == {"google_service_account": "/secrets/old.json"}
    assert gcp_storage_options("gcp_adc") == {}  # application default credentials

    azure = {
        "azure_key": {"conn_type": "wasb", "login": "lakeacct", "password": "a2V5"},
        "azure_sas": {
            "conn_type": "wasb",
            "host": "lakeacct.blob.core.windows.net",
            "extra": {"sas_token": "sv=2024&sig=abc"},
        },
        "azure_sp": {
            "conn_type": "adls",
            "host": "lakeacct",
            "login": "client-id",
            "password": "client-secret",
            "extra": {"tenant_id": "tenant"},
        },
    }
    for name, conn in azure.items():
        monkeypatch.setenv(f"AIRFLOW_CONN_{name.upper()}", json.dumps(conn))
    assert delta_location("abfs://azure_key@container/lucca/rt") == (
        "abfss://container/lucca/rt",
        {"azure_storage_account_name": "lakeacct", "azure_storage_account_key": "a2V5"},
    )
    assert azure_storage_options("azure_sas") == {
        "azure_storage_account_name": "lakeacct",
        "azure_storage_sas_key": "sv=2024&sig=abc",
    }
    assert azure_storage_options("azure_sp") == {
        "azure_storage_account_name": "lakeacct",
        "azure_tenant_id": "tenant",
        "azure_client_id": "client-id",
        "azure_client_secret": "client-secret",
    }


@pytest.mark.slow
def test_no_credential_reaches_the_logs_or_the_xcom_summary(
    lucca_conn: SandboxServer,
    s3_bucket: str,
    moto_s3: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The operator's task log (Airflow's structlog, on stdout) and every stdlib log record."""
    secret = f"SeCrEt-{uuid.uuid4().hex}"
    token = f"ToKeN-{uuid.uuid4().hex}"
    aws_conn(
        monkeypatch,
        "aws_secretive",
        moto_s3,
        login="AKIASECRETIVE",
        password=secret,
        aws_session_token=token,
        region_name="us-east-1",
    )
    # Everything at INFO, Airflow's default, and the provider's and the task's own DEBUG. (With
    # botocore at DEBUG, botocore itself logs the x-amz-security-token header of each request.)
    caplog.set_level(logging.INFO)
    for name in ("airflow_provider_lucca", "airflow.task", "tests"):
        caplog.set_level(logging.DEBUG, logger=name)
    output_path = f"s3://aws_secretive@{s3_bucket}/lucca/rt"
    summary = run_operator(output_path, "2025-03-01", "2025-03-05")
    assert summary["records"] > 0
    # A run that fails in the commit (no such bucket) reports the store's error, not the options.
    with pytest.raises(
        (LuccaStorageError, LuccaConfigError), match=r"no-such-bucket-here|NoSuchBucket"
    ) as failure:
        run_operator("s3://aws_secretive@no-such-bucket-here/lucca/rt", "2025-03-01", "2025-03-05")
    out, err = capfd.readouterr()
    logs = "\n".join((out, err, caplog.text))
    assert "Committed version 0 of Delta table" in logs
    for text in (logs, json.dumps(summary), str(failure.value), repr(failure.value)):
        assert secret not in text
        assert token not in text


# --------------------------------------------------------------------------- figures


@pytest.mark.slow
def test_a_year_commits_once_on_s3_with_one_log_write(
    sandbox: SandboxServer, s3_store: Store, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """365 days in one commit on moto S3, every request counted at a proxy: one log entry, one
    data file per day with records. The run is a worker process, as in Airflow: only the S3
    server and the proxy live in this one (a library holding the GIL through its requests
    cannot stall them)."""
    start, until = "2025-01-01", "2026-01-01"
    with S3FaultProxy(s3_store.options["AWS_ENDPOINT_URL"]) as proxy:
        options = {**s3_store.options, "AWS_ENDPOINT_URL": proxy.url}
        runs = []
        for name in ("create", "replace"):
            before = len(proxy.log)
            spec = child_spec(s3_store, sandbox, start, until, point="none", run_id=name)
            child = Child.start(tmp_path, name, **{**spec, "storage_options": options})
            try:
                message = child.message()
                assert child.process.wait(timeout=CHILD_TIMEOUT) == 0, child.log()
            finally:
                child.stop()
            runs.append((message, proxy.log[before:]))
    with capsys.disabled():
        for (message, requests), name in zip(runs, ("creates", "replaces"), strict=True):
            methods: dict[str, int] = {}
            for method, _, _ in requests:
                methods[method] = methods.get(method, 0) + 1
            print(
                f"\n365-day window on moto S3 ({name} the table): commit "
                f"{message['commit_seconds']:.2f} s, {len(requests)} requests {methods}, "
                f"{message['summary']['records']} records"
            )
    assert read_with_deltalake(s3_store) == truth(sandbox.records, (start, until))
    (message, requests) = runs[1]
    summary = message["summary"]
    assert summary["table_version"] == 1
    written = {
        path.split("?")[0]
        for method, path, _ in requests
        if method in ("PUT", "POST") and path.split("?")[0].endswith(".parquet")
    }
    log_entries = [path for method, path, _ in requests if log_put(method, path)]
    assert len(log_entries) == 1, log_entries
    assert len(written) == sum(1 for count in summary["partitions"].values() if count)
    # A file per day takes one PUT (object_store's put) or a multipart upload (initiate, part,
    # complete) and a HEAD: more would be requests per batch or per log entry.
    assert len(requests) < 6 * 365
