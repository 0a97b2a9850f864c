"""Several Lucca accounts (tenants) in one Delta or Iceberg table, as the tenant fan-out writes it.

Each tenant is a sandbox of its own (another seed: other records, many of the same ids), extracted
over HTTP by the real extraction into one table with a ``tenant`` partition column. What a user
would notice if it broke: a tenant's run replacing another tenant's rows; tenants finishing
together and one of them failing, or its rows lost or doubled; a single-account table and a
tenants' table mixed (a run of one kind replacing the other kind's rows); maintenance losing,
doubling or mixing tenants' rows; a commit not saying which tenant it was; engines not seeing the
``tenant`` column.

Every check reads the table back with the format's own library and two independent readers
(polars, DuckDB), which must agree; each row is compared on its tenant, day, id, owner and
duration, so that a row landing under the wrong tenant shows.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import duckdb
import duckdb_extension_delta
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

from airflow_provider_lucca.client import LuccaConfigError  # noqa: E402
from airflow_provider_lucca.extraction.realized_trainings import (  # noqa: E402
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import iceberg as iceberg_module  # noqa: E402
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink  # noqa: E402
from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink  # noqa: E402
from airflow_provider_lucca.extraction.window import DateWindow  # noqa: E402
from lucca_sandbox import SandboxConfig, SandboxServer  # noqa: E402
from tests.helpers import SANDBOX_KEY, client_for, tree  # noqa: E402

LOG = logging.getLogger("tests.table_tenants")
DELTA_EXTENSION = (
    Path(duckdb_extension_delta.__file__).parent
    / "extensions"
    / f"v{duckdb.__version__}"
    / "delta.duckdb_extension"
)
ICEBERG_TABLE = "lucca.realized_trainings"
ICEBERG_CATALOG = "lucca"
RETRIED = "committing again on the new table version"
#: Tenant names as the tenant list holds them (one longer than the 16 characters Iceberg keeps
#: of a string column's bounds).
NAMES = ("acme-fr", "acme-de", "globex_international-holding", "initech", "umbrella-2")

#: (tenant, day, id, ownerId, durationInHours): what tells two tenants' rows apart.
Key = tuple[str, date, int, int | None, str | None]


# --------------------------------------------------------------------------- tenants and runs


@pytest.fixture
def tenants() -> Iterator[dict[str, SandboxServer]]:
    """One sandbox per tenant name, each with records of its own (600 over 2025)."""
    servers = {
        name: SandboxServer(SandboxConfig(records=600, seed=11 + number))
        for number, name in enumerate(NAMES)
    }
    for server in servers.values():
        server.start()
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def run(
    sandbox: SandboxServer, sink: Any, start: str, until: str, lookback: int = 0
) -> ExtractionSummary:
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(start), date.fromisoformat(until)),
        lookback_days=lookback,
    )
    with client_for(sandbox.url, api_key=SANDBOX_KEY) as client:
        return extract_realized_trainings(client, request, sink, log=LOG)


def truth(tenant: str, sandbox: SandboxServer, start: str, until: str) -> list[Key]:
    """The rows ``tenant`` must have in ``[start, until)``, from its sandbox's records."""
    return sorted(
        (
            tenant,
            date.fromisoformat(record["sessionEndsOn"]),
            record["id"],
            record.get("ownerId"),
            _cents(record.get("durationInHours")),
        )
        for record in sandbox.records
        if start <= record["sessionEndsOn"] < until
    )


def _cents(value: Any) -> str | None:
    return None if value is None else str(Decimal(str(value)).quantize(Decimal("0.01")))


def keys(rows: list[dict[str, Any]]) -> list[Key]:
    return sorted(
        (
            row["tenant"],
            row["session_end_on"],
            row["id"],
            row["ownerId"],
            _cents(row["durationInHours"]),
        )
        for row in rows
    )


# --------------------------------------------------------------------------- the two formats


class Format(Protocol):
    name: str
    #: What a refusal must name: output_path's table root, or the iceberg_table.
    target: str

    def sink(self, tenant: str | None = None, **options: Any) -> Any: ...

    def readers(self) -> dict[str, list[dict[str, Any]]]: ...

    def commits(self) -> list[dict[str, str]]: ...

    def live_files(self) -> dict[str, str | None]: ...

    def tenants_in(self, path: str) -> set[str]: ...

    def partitioning(self) -> list[str]: ...

    def state(self) -> Any: ...


class Delta:
    name = "delta"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.target = str(root)

    def sink(self, tenant: str | None = None, **options: Any) -> DeltaSink:
        return DeltaSink(str(self.root), tenant=tenant, **options)

    def readers(self) -> dict[str, list[dict[str, Any]]]:
        """delta-rs, polars and DuckDB's own Delta reader (``delta_scan``)."""
        uri = str(self.root)
        connection = duckdb.connect(config={"allow_unsigned_extensions": "true"})
        try:
            connection.execute(f"LOAD '{DELTA_EXTENSION}'")
            cursor = connection.execute("SELECT * FROM delta_scan(?)", [uri])
            names = [column[0] for column in cursor.description]
            from_duckdb = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()
        return {
            "delta-rs": deltalake.DeltaTable(uri).to_pyarrow_table().to_pylist(),
            "polars": pl.read_delta(uri).to_dicts(),
            "duckdb": from_duckdb,
        }

    def commits(self) -> list[dict[str, str]]:
        """The run commits' metadata, oldest first (maintenance commits left out)."""
        history = deltalake.DeltaTable(str(self.root)).history()
        return [entry for entry in reversed(history) if "lucca.run_token" in entry]

    def live_files(self) -> dict[str, str | None]:
        """Each data file of the latest version and its ``tenant`` partition value."""
        actions = pa.table(deltalake.DeltaTable(str(self.root)).get_add_actions(flatten=True))
        return {row["path"]: row.get("partition.tenant") for row in actions.to_pylist()}

    def tenants_in(self, path: str) -> set[str]:
        """The tenants of a data file's rows (Delta keeps partition values out of the file)."""
        return {self.live_files()[path] or ""}

    def partitioning(self) -> list[str]:
        return list(deltalake.DeltaTable(str(self.root)).metadata().partition_columns)

    def state(self) -> Any:
        return tree(self.root)


class Iceberg:
    name = "iceberg"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.target = ICEBERG_TABLE
        self.catalog = {
            "type": "sql",
            "uri": f"sqlite:///{directory / 'catalog.db'}",
            "warehouse": f"file://{directory}/warehouse",
        }

    def sink(self, tenant: str | None = None, **options: Any) -> IcebergSink:
        return IcebergSink(
            self.catalog, ICEBERG_TABLE, catalog_name=ICEBERG_CATALOG, tenant=tenant, **options
        )

    def table(self) -> Any:
        from pyiceberg.catalog import load_catalog

        return load_catalog(ICEBERG_CATALOG, **self.catalog).load_table(ICEBERG_TABLE)

    def readers(self) -> dict[str, list[dict[str, Any]]]:
        """pyiceberg's scan, polars (its own Parquet reader), DuckDB over the live data files."""
        table = self.table()
        with warnings.catch_warnings():
            # polars warns that its Iceberg reader is slow on some inputs: not what is tested.
            warnings.simplefilter("ignore")
            from_polars = (
                pl.scan_iceberg(table.metadata_location, reader_override="native")
                .collect()
                .to_dicts()
            )
        files = [urlsplit(path).path for path in self.live_files()]
        connection = duckdb.connect()
        try:
            cursor = connection.execute(
                "SELECT * FROM read_parquet(?, hive_partitioning = false)", [files]
            )
            names = [column[0] for column in cursor.description]
            from_duckdb = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()
        return {
            "pyiceberg": table.scan().to_arrow().to_pylist(),
            "polars": from_polars,
            "duckdb": from_duckdb,
        }

    def commits(self) -> list[dict[str, str]]:
        table = self.table()
        summaries = [snapshot.summary.additional_properties for snapshot in table.snapshots()]
        return [summary for summary in summaries if "lucca.run_token" in summary]

    def live_files(self) -> dict[str, str | None]:
        """Each live data file and the tenant of its partition."""
        table = self.table()
        spec_fields = {spec_id: spec.fields for spec_id, spec in table.specs().items()}
        found: dict[str, str | None] = {}
        for task in table.scan().plan_files():
            names = [field.name for field in spec_fields[task.file.spec_id]]
            found[task.file.file_path] = (
                task.file.partition[names.index("tenant")] if "tenant" in names else None
            )
        return found

    def tenants_in(self, path: str) -> set[str]:
        """The tenants of a data file's rows, read from the file (Iceberg stores the column)."""
        return set(pq.read_table(urlsplit(path).path, columns=["tenant"]).column(0).to_pylist())

    def partitioning(self) -> list[str]:
        """The partition fields as ``transform(column)``."""
        table = self.table()
        schema = table.schema()
        return [
            f"{field.transform}({schema.find_column_name(field.source_id)})"
            for field in table.spec().fields
        ]

    def state(self) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            location = self.table().metadata_location
        except NoSuchTableError:
            location = None
        return location, tree(self.directory / "warehouse")


@pytest.fixture(params=["delta", "iceberg"])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Format:
    if request.param == "delta":
        return Delta(tmp_path / "lake" / "realized_trainings")
    return Iceberg(tmp_path)


def read(lake: Format) -> list[Key]:
    """The table's rows as every reader sees them (they must agree, ``tenant`` column included)."""
    seen = {name: keys(rows) for name, rows in lake.readers().items()}
    first, *others = seen
    for name in others:
        assert seen[name] == seen[first], f"{name} and {first} disagree"
    return seen[first]


def of(rows: list[Key], tenant: str) -> list[Key]:
    return [row for row in rows if row[0] == tenant]


# --------------------------------------------------------------------------- one table, tenants


@pytest.mark.slow
def test_each_tenants_run_replaces_only_its_own_rows(
    tenants: dict[str, SandboxServer], lake: Format
) -> None:
    a, b = "acme-fr", "globex_international-holding"
    run(tenants[a], lake.sink(a), "2025-02-01", "2025-03-01")
    run(tenants[b], lake.sink(b), "2025-02-10", "2025-03-10")
    expected_b = truth(b, tenants[b], "2025-02-10", "2025-03-10")
    assert read(lake) == sorted(truth(a, tenants[a], "2025-02-01", "2025-03-01") + expected_b)
    files_b = {path for path, tenant in lake.live_files().items() if tenant == b}
    files_a = {path for path, tenant in lake.live_files().items() if tenant == a}
    assert lake.partitioning() == (
        ["tenant", "session_end_on"]
        if isinstance(lake, Delta)
        else ["identity(tenant)", "identity(session_end_on)"]
    )

    # Tenant A's records of February 10 to 19 change (half of them gone), and A runs those days
    # again: the days B has rows on too.
    rerun = [f"2025-02-{day}" for day in range(10, 20)]
    changed = [r["id"] for r in tenants[a].records if r["sessionEndsOn"] in rerun]
    assert changed
    tenants[a].configure(delete_ids=changed[::2])
    summary = run(tenants[a], lake.sink(a), "2025-02-10", "2025-02-20")

    rows = read(lake)
    assert of(rows, b) == expected_b
    assert of(rows, a) == truth(a, tenants[a], "2025-02-01", "2025-03-01")
    live = lake.live_files()
    assert {path for path, tenant in live.items() if tenant == b} == files_b, "B's files touched"
    # A's files outside the days it ran again are the same files; its files of those days were
    # all replaced.
    kept_a = {path for path, tenant in live.items() if tenant == a} & files_a
    assert kept_a == {
        path for path in files_a if not any(f"session_end_on={day}" in path for day in rerun)
    }
    # Every data file holds one tenant's rows, under a tenant=<name>/ directory.
    for path, tenant in live.items():
        assert tenant in (a, b)
        assert f"tenant={tenant}/session_end_on=" in path
        assert lake.tenants_in(path) == {tenant}
    # Each commit says whose it is.
    commits = lake.commits()
    assert [commit["lucca.tenant"] for commit in commits] == [a, b, a]
    assert commits[-1]["lucca.run_token"] == summary["run_token"]
    assert commits[-1]["lucca.records"] == str(summary["records"])


# --------------------------------------------------------------------------- tenants at once


def hold_before_commit(sink: Any, barrier: threading.Barrier) -> None:
    """Make ``sink``'s first commit wait at ``barrier`` once it has read the table, right before
    it commits: every run then commits on the same table version, and all but one lose."""
    if isinstance(sink, DeltaSink):
        real_open, opened = sink.open, [0]

        def open_then_wait() -> Any:
            table = real_open()
            opened[0] += 1
            if opened[0] == 2:  # the first is the guard's, the second the commit's
                barrier.wait(timeout=60)
            return table

        sink.open = open_then_wait  # type: ignore[method-assign]
    else:
        real_overwrite, calls = sink._overwrite, [0]

        def wait_then_overwrite(*args: Any) -> int:
            calls[0] += 1
            if calls[0] == 1:
                barrier.wait(timeout=60)
            return real_overwrite(*args)  # type: ignore[no-any-return]

        sink._overwrite = wait_then_overwrite


def run_at_once(
    lake: Format, tenants: dict[str, SandboxServer], start: str, until: str
) -> dict[str, ExtractionSummary]:
    """Every tenant's run in a thread of its own, their commits released together."""
    barrier = threading.Barrier(len(tenants))
    summaries: dict[str, ExtractionSummary] = {}
    errors: dict[str, BaseException] = {}

    def one(name: str) -> None:
        try:
            sink = lake.sink(name)
            hold_before_commit(sink, barrier)
            summaries[name] = run(tenants[name], sink, start, until)
        except BaseException as exc:
            errors[name] = exc
            barrier.abort()

    threads = [threading.Thread(target=one, args=(name,)) for name in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == {}
    return summaries


@pytest.mark.slow
@pytest.mark.parametrize("table_exists", [True, False], ids=["existing-table", "first-runs"])
def test_tenants_committing_at_once_all_land_each_row_once(
    tenants: dict[str, SandboxServer],
    lake: Format,
    table_exists: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start, until = "2025-03-01", "2025-04-01"
    first = NAMES[0]
    if table_exists:  # the first tenant's earlier run, which its new run replaces
        run(tenants[first], lake.sink(first), "2025-02-15", "2025-03-15")

    with caplog.at_level(logging.WARNING):
        summaries = run_at_once(lake, tenants, start, until)

    rows = read(lake)
    expected = [row for name in NAMES for row in truth(name, tenants[name], start, until)]
    if table_exists:
        expected += truth(first, tenants[first], "2025-02-15", start)
    assert rows == sorted(expected)  # every tenant's rows, each once
    commits = lake.commits()
    assert sorted(commit["lucca.tenant"] for commit in commits[-len(NAMES) :]) == sorted(NAMES)
    assert {summaries[name]["run_token"] for name in NAMES} == {
        commit["lucca.run_token"] for commit in commits[-len(NAMES) :]
    }
    # The race happened, and was settled: delta-rs fails a commit on a version another commit
    # took (whatever its partitions), and the sink commits again on the new version; pyiceberg
    # re-bases a commit whose scope (its tenant's days) no other commit touched, so with five
    # tenants its own retries suffice (each commit makes another fail at most once).
    if isinstance(lake, Delta):
        assert RETRIED in caplog.text
    else:
        assert "Commit failed due to a concurrent update" in caplog.text
        assert RETRIED not in caplog.text
    assert all(tenant in NAMES for tenant in lake.live_files().values())


@pytest.mark.slow
def test_twenty_tenants_released_together_all_commit_into_one_delta_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """What a fan-out over many tenants does at the end of each run: their commits come
    together. Each lost race of a tenant's commit is another tenant's commit landing, so 20
    retries are enough for 21 tenants at once, whatever the timing; the jittered waits keep the
    losers from racing again in lockstep (with the 5 linear retries of a single-account table,
    some of 20 such tenants failed here)."""
    lake = Delta(tmp_path / "lake")
    servers = {
        f"tenant-{number:02d}": SandboxServer(SandboxConfig(records=200, seed=100 + number))
        for number in range(20)
    }
    for server in servers.values():
        server.start()
    try:
        with caplog.at_level(logging.WARNING):
            run_at_once(lake, servers, "2025-03-01", "2025-04-01")
        expected = [
            row
            for name, server in servers.items()
            for row in truth(name, server, "2025-03-01", "2025-04-01")
        ]
        assert read(lake) == sorted(expected)
    finally:
        for server in servers.values():
            server.stop()
    assert sorted(commit["lucca.tenant"] for commit in lake.commits()) == sorted(servers)
    assert caplog.text.count(RETRIED) >= len(servers) - 1


# --------------------------------------------------------------------------- never mixed


@pytest.mark.parametrize(
    ("first", "then", "message"),
    [
        ("acme-fr", None, r"several Lucca accounts.*Set tenant"),
        (None, "acme-fr", r"single-account table.*without tenant"),
    ],
    ids=["single-account-run-into-tenants-table", "tenant-run-into-single-account-table"],
)
def test_a_tenants_table_and_a_single_account_table_are_never_mixed(
    tenants: dict[str, SandboxServer],
    lake: Format,
    first: str | None,
    then: str | None,
    message: str,
) -> None:
    sandbox = tenants["acme-fr"]
    run(sandbox, lake.sink(first), "2025-03-01", "2025-03-08")
    before = lake.state()
    sandbox.reset_stats()

    with pytest.raises(LuccaConfigError, match=message) as raised:
        run(sandbox, lake.sink(then), "2025-03-01", "2025-03-08")

    assert lake.target in str(raised.value)
    assert ("output_path" if lake.name == "delta" else "iceberg_table") in str(raised.value)
    assert sandbox.stats()["requests"] == 0
    assert lake.state() == before
    metadata = lake.commits()[0]
    assert metadata.get("lucca.tenant") == first  # none in a single-account table's commits


def test_a_tenant_name_that_is_not_a_slug_is_refused(lake: Format) -> None:
    with pytest.raises(LuccaConfigError, match="Invalid tenant"):
        lake.sink("Acme/FR")


# --------------------------------------------------------------------------- maintenance


def split_partitions_into_files(lake: Format, parts: int = 3) -> None:
    """Rewrite a Delta table's rows as ``parts`` writes, each (tenant, day) then held in several
    files (as another writer's appends leave it): the rows stay the same."""
    assert isinstance(lake, Delta)
    uri = str(lake.root)
    data = pa.table(deltalake.DeltaTable(uri).to_pyarrow_table())
    for part in range(parts):
        chunk = data.filter(pa.array([index % parts == part for index in range(data.num_rows)]))
        deltalake.write_deltalake(uri, chunk, mode="overwrite" if part == 0 else "append")


def files_per_partition(lake: Format) -> dict[tuple[str | None, str], int]:
    counts: dict[tuple[str | None, str], int] = {}
    for path, tenant in lake.live_files().items():
        day = path.split("session_end_on=", 1)[1][:10]
        counts[tenant, day] = counts.get((tenant, day), 0) + 1
    return counts


@pytest.mark.slow
def test_maintenance_compacts_each_tenants_day_apart_and_keeps_every_row(
    tenants: dict[str, SandboxServer], lake: Format, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = NAMES[:3]
    monkeypatch.setattr(iceberg_module, "CHUNK_ROWS", 2)  # Iceberg days of several files
    for name in names:
        run(tenants[name], lake.sink(name), "2025-03-01", "2025-03-15")
    if isinstance(lake, Delta):
        split_partitions_into_files(lake)
    before = read(lake)
    several = {key: count for key, count in files_per_partition(lake).items() if count > 1}
    assert {tenant for tenant, _ in several} == set(names)

    result = lake.sink().maintain(retention=timedelta(0), log=LOG)

    assert read(lake) == before
    assert set(files_per_partition(lake).values()) == {1}
    assert result["compacted_days"] == len(several)
    assert result["compacted_files"] == sum(several.values())
    for path, tenant in lake.live_files().items():
        assert f"tenant={tenant}/session_end_on=" in path
        assert lake.tenants_in(path) == {tenant}
    # The table is still a tenants' table its runs commit to.
    run(tenants[names[0]], lake.sink(names[0]), "2025-03-05", "2025-03-10")
    assert read(lake) == before


@pytest.mark.slow
def test_a_compaction_overtaken_by_another_tenants_run_keeps_both(
    tenants: dict[str, SandboxServer],
    lake: Format,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The run of tenant B commits B's days while the compaction rewrites A's same days: neither
    A's rows nor B's new rows are lost or doubled. Iceberg's compaction scope is A's days of
    tenant A alone, which B's run did not touch: pyiceberg re-bases the rewrite and it commits
    without starting again. delta-rs fails an OPTIMIZE after any concurrent removal: it starts
    again on the run's version."""
    a, b = NAMES[0], NAMES[1]
    start, until = "2025-03-01", "2025-03-15"
    run(tenants[b], lake.sink(b), start, until)
    monkeypatch.setattr(iceberg_module, "CHUNK_ROWS", 2)  # A's Iceberg days of several files
    run(tenants[a], lake.sink(a), start, until)
    if isinstance(lake, Delta):
        split_partitions_into_files(lake)
    gone = [r["id"] for r in tenants[b].records if start <= r["sessionEndsOn"] < until]
    tenants[b].configure(delete_ids=gone[::2])
    raced: list[ExtractionSummary] = []
    sink = overtaken(lake, lambda: raced.append(run(tenants[b], lake.sink(b), start, until)))

    with caplog.at_level(logging.WARNING):
        result = sink.maintain(retention=timedelta(days=7), log=LOG)

    assert len(raced) == 1
    rows = read(lake)
    assert of(rows, a) == truth(a, tenants[a], start, until)
    assert of(rows, b) == truth(b, tenants[b], start, until)
    assert (RETRIED in caplog.text) == isinstance(lake, Delta)
    assert result["compacted_days"] > 0
    assert all(
        count == 1 for (tenant, _), count in files_per_partition(lake).items() if tenant == a
    )


def overtaken(lake: Format, race: Callable[[], Any]) -> Any:
    """A maintenance sink of ``lake`` whose compaction, once it has read the table, lets
    ``race`` commit first (a real run, through its own sink)."""
    sink = lake.sink()
    calls = [0]
    if isinstance(sink, DeltaSink):
        real_open = sink.open

        def open_then_race() -> Any:
            table = real_open()
            calls[0] += 1
            if calls[0] == 2:  # maintain() looked, then the compaction opened the table
                race()
            return table

        sink.open = open_then_race  # type: ignore[method-assign]
        return sink
    real_rewrite = sink._rewrite

    def rewrite_after_race(table: Any, targets: Any, written: list[str]) -> None:
        calls[0] += 1
        if calls[0] == 1:
            race()
        real_rewrite(table, targets, written)

    sink._rewrite = rewrite_after_race
    return sink
