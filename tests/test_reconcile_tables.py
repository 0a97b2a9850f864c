"""Reconciling a Delta or Iceberg table with Lucca's counts, against the sandbox.

What a user would notice if it broke: the weekly check committing a table version (or snapshot)
when nothing changed; a changed day found but its whole month rewritten, or other days' data
files replaced; a table left different from Lucca after the check; in a table shared by several
Lucca accounts (the ``tenant`` column), one tenant's check counting, or rewriting, another
tenant's rows; a table extracted with other filters compared anyway.

Tables are read back with their own library (delta-rs, pyiceberg), row by row, and compared with
the sandbox's records on the columns that tell records apart.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pytest

deltalake = pytest.importorskip("deltalake")
pytest.importorskip("pyiceberg")

from airflow_provider_lucca.client import LuccaConfigError  # noqa: E402
from airflow_provider_lucca.extraction.realized_trainings import (  # noqa: E402
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.reconcile import (  # noqa: E402
    ReconcileRequest,
    ReconcileSummary,
    reconcile_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink  # noqa: E402
from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink  # noqa: E402
from airflow_provider_lucca.extraction.window import DateWindow  # noqa: E402
from airflow_provider_lucca.operators.realized_trainings import (  # noqa: E402
    RealizedTrainingsOperator,
)
from airflow_provider_lucca.operators.reconcile import (  # noqa: E402
    RealizedTrainingsReconcileOperator,
)
from lucca_sandbox import SandboxConfig, SandboxServer  # noqa: E402
from tests.helpers import SANDBOX_KEY, client_for, lucca_conn_json, tree  # noqa: E402

LOG = logging.getLogger("tests.reconcile_tables")
ONE_DAY = timedelta(days=1)
#: Two months, ~200 records a month (a month that differs is cut in halves, then read).
CONFIG = SandboxConfig(records=400, start=date(2024, 1, 1), end=date(2024, 2, 29))
WINDOW = DateWindow(CONFIG.start, CONFIG.end + ONE_DAY)
MONTHS = 2
#: Two probes a month, and two more: both months touch the history's ends, so none can tell how
#: Lucca reads the date bounds and two requests ask (a page for a day holding records, then that
#: day's count); with three months or more, none do.
ASKED = 2 * MONTHS + 2
ICEBERG_TABLE = "lucca.realized_trainings"

#: (tenant, day, id, ownerId, hasAttended, durationInHours): what tells rows apart.
Key = tuple[str | None, str, int, int | None, bool | None, str | None]


class Table(Protocol):
    name: str

    def sink(self, tenant: str | None = None) -> Any: ...

    def versions(self) -> list[int]: ...

    def rows(self) -> list[dict[str, Any]]: ...

    def day_files(self) -> dict[tuple[str | None, str], set[str]]: ...

    def state(self) -> dict[str, bytes]: ...


class Delta:
    name = "delta"

    def __init__(self, root: Path) -> None:
        self.root = root

    def sink(self, tenant: str | None = None) -> DeltaSink:
        return DeltaSink(str(self.root), tenant=tenant)

    def table(self) -> Any:
        return deltalake.DeltaTable(str(self.root))

    def versions(self) -> list[int]:
        return sorted(entry["version"] for entry in self.table().history())

    def rows(self) -> list[dict[str, Any]]:
        return self.table().to_pyarrow_table().to_pylist()  # type: ignore[no-any-return]

    def day_files(self) -> dict[tuple[str | None, str], set[str]]:
        actions = pa.table(self.table().get_add_actions(flatten=True)).to_pylist()
        files: dict[tuple[str | None, str], set[str]] = {}
        for action in actions:
            key = (action.get("partition.tenant"), str(action["partition.session_end_on"]))
            files.setdefault(key, set()).add(action["path"])
        return files

    def state(self) -> dict[str, bytes]:
        return tree(self.root)


class Iceberg:
    name = "iceberg"

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.directory = directory
        self.catalog = {
            "type": "sql",
            "uri": f"sqlite:///{directory / 'catalog.db'}",
            "warehouse": f"file://{directory}/warehouse",
        }

    def sink(self, tenant: str | None = None) -> IcebergSink:
        return IcebergSink(self.catalog, ICEBERG_TABLE, catalog_name="lucca", tenant=tenant)

    def table(self) -> Any:
        from pyiceberg.catalog import load_catalog

        return load_catalog("lucca", **self.catalog).load_table(ICEBERG_TABLE)

    def versions(self) -> list[int]:
        return [snapshot.snapshot_id for snapshot in self.table().metadata.snapshots]

    def rows(self) -> list[dict[str, Any]]:
        return self.table().scan().to_arrow().to_pylist()  # type: ignore[no-any-return]

    def day_files(self) -> dict[tuple[str | None, str], set[str]]:
        files: dict[tuple[str | None, str], set[str]] = {}
        for entry in self.table().inspect.files().to_pylist():
            partition = entry["partition"]
            key = (partition.get("tenant"), str(partition["session_end_on"]))
            files.setdefault(key, set()).add(entry["file_path"])
        return files

    def state(self) -> dict[str, bytes]:
        return tree(self.directory)  # the catalog's database and the warehouse


@pytest.fixture(params=["delta", "iceberg"])
def table(request: pytest.FixtureRequest, tmp_path: Path) -> Table:
    if request.param == "delta":
        return Delta(tmp_path / "delta")
    return Iceberg(tmp_path / "iceberg")


# --------------------------------------------------------------------------- helpers


def extract(server: SandboxServer, sink: Any, window: DateWindow = WINDOW, **options: Any) -> Any:
    with client_for(server.url, api_key=SANDBOX_KEY) as client:
        return extract_realized_trainings(
            client, ExtractionRequest(window=window, **options), sink, log=LOG
        )


def reconcile(
    server: SandboxServer, sink: Any, request: ReconcileRequest | None = None
) -> ReconcileSummary:
    with client_for(server.url, api_key=SANDBOX_KEY) as client:
        return reconcile_realized_trainings(client, request or ReconcileRequest(), sink, log=LOG)


def cents(value: Any) -> str | None:
    return None if value is None else str(Decimal(str(value)).quantize(Decimal("0.01")))


def truth(server: SandboxServer, tenant: str | None = None) -> list[Key]:
    return sorted(
        (
            tenant,
            record["sessionEndsOn"],
            record["id"],
            record.get("ownerId"),
            record.get("hasAttended"),
            cents(record.get("durationInHours")),
        )
        for record in server.records
        if WINDOW.start.isoformat() <= record["sessionEndsOn"] < WINDOW.end.isoformat()
    )


def keys(rows: list[dict[str, Any]], tenant: str | None = None) -> list[Key]:
    """The rows' keys (of one tenant's rows when given)."""
    return sorted(
        (
            row.get("tenant"),
            row["session_end_on"].isoformat(),
            row["id"],
            row["ownerId"],
            row["hasAttended"],
            cents(row["durationInHours"]),
        )
        for row in rows
        if tenant is None or row.get("tenant") == tenant
    )


def day_counts(records: list[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    result: dict[str, tuple[int, int]] = {}
    for record in records:
        total, done = result.get(record["sessionEndsOn"], (0, 0))
        result[record["sessionEndsOn"]] = (total + 1, done + (record.get("hasAttended") is True))
    return result


def changed_days(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[str]:
    old, new = day_counts(before), day_counts(after)
    return sorted(d for d in set(old) | set(new) if old.get(d, (0, 0)) != new.get(d, (0, 0)))


def ids_on(server: SandboxServer, day: date) -> list[int]:
    return sorted(r["id"] for r in server.records if r["sessionEndsOn"] == day.isoformat())


def busy_day(server: SandboxServer, start: date) -> date:
    """The first day from ``start`` that, with the next one, has records."""
    day = start
    while not (ids_on(server, day) and ids_on(server, day + ONE_DAY)):
        day += ONE_DAY
    return day


def mutate_three_days(server: SandboxServer, seed: int = 4) -> list[str]:
    """A late import on a January day, a deletion and a flip on two consecutive February days;
    returns the days whose counts changed."""
    before = server.records
    imported = busy_day(server, date(2024, 1, 17))
    deleted = busy_day(server, date(2024, 2, 5))
    server.mutate(
        seed=seed,
        inserts=1,
        from_=imported,
        until=imported + ONE_DAY,
        delete_ids=ids_on(server, deleted)[:1],
        flip_ids=ids_on(server, deleted + ONE_DAY)[:1],
    )
    days = changed_days(before, server.records)
    assert days == [d.isoformat() for d in (imported, deleted, deleted + ONE_DAY)]
    return days


def by_day(rows: list[Key], days: list[str], keep: bool) -> list[Key]:
    """The rows of ``days`` (``keep``) or of the other days."""
    return [row for row in rows if (row[1] in days) == keep]


# --------------------------------------------------------------------------- the tests


@pytest.mark.slow
def test_nothing_changed_commits_no_version_and_costs_the_count_probes_alone(table: Table) -> None:
    with SandboxServer(CONFIG) as server:
        extract(server, table.sink())
        before, versions = table.state(), table.versions()
        server.reset_stats()
        summary = reconcile(server, table.sink())
        assert server.stats()["requests"] == ASKED

    assert table.versions() == versions
    assert table.state() == before  # not a byte written, the catalog's pointer included
    assert summary["changed_days"] == []
    assert summary["table_versions"] == []
    assert summary["requests"] == ASKED
    assert summary["file_format"] == table.name


@pytest.mark.slow
def test_a_mutation_rewrites_only_its_days_one_commit_per_run(table: Table) -> None:
    with SandboxServer(CONFIG) as server:
        extract(server, table.sink())
        rows, files, versions = keys(table.rows()), table.day_files(), table.versions()
        days = mutate_three_days(server)
        summary = reconcile(server, table.sink())
        want = truth(server)

    # One commit per run of consecutive days: [imported], [deleted, flipped].
    assert [change["day"] for change in summary["changed_days"]] == days
    assert len(summary["re_extracted"]) == 2
    new_versions = [v for v in table.versions() if v not in versions]
    assert len(new_versions) == 2
    assert sorted(summary["table_versions"]) == sorted(new_versions)
    got = keys(table.rows())
    assert got == want
    # The other days' rows, and the data files holding them, are as they were.
    assert by_day(got, days, keep=False) == by_day(rows, days, keep=False)
    after = table.day_files()
    assert {k: v for k, v in after.items() if k[1] not in days} == {
        k: v for k, v in files.items() if k[1] not in days
    }
    assert all(after.get((None, day), set()).isdisjoint(files[(None, day)]) for day in days)


@pytest.mark.slow
def test_a_tenants_table_reconciles_only_its_tenant(table: Table) -> None:
    """Two Lucca accounts in one table: each check counts and rewrites only its tenant's rows,
    and does not see the other account's changes."""
    with (
        SandboxServer(CONFIG) as acme,
        SandboxServer(SandboxConfig(**{**vars(CONFIG), "seed": 7})) as globex,
    ):
        extract(acme, table.sink("acme"))
        extract(globex, table.sink("globex"))
        rows, versions = table.rows(), table.versions()
        acme_days = mutate_three_days(acme)
        before_globex = globex.records
        gone = busy_day(globex, date(2024, 2, 17))
        globex.mutate(delete_ids=ids_on(globex, gone))
        assert changed_days(before_globex, globex.records) == [gone.isoformat()]

        first = reconcile(acme, table.sink("acme"))
        after_acme = table.rows()
        files_after_acme = table.day_files()
        second = reconcile(globex, table.sink("globex"))
        third = reconcile(globex, table.sink("globex"))

        want = truth(acme, "acme") + truth(globex, "globex")
        acme_truth = truth(acme, "acme")

    final = table.rows()
    assert [change["day"] for change in first["changed_days"]] == acme_days
    assert keys(after_acme, "acme") == acme_truth
    # acme's check left globex's rows alone, its deletion included (not acme's to see).
    assert keys(after_acme, "globex") == keys(rows, "globex")
    assert [change["day"] for change in second["changed_days"]] == [gone.isoformat()]
    assert second["changed_days"][0]["lucca"] == {"records": 0, "attended": 0}
    # globex's check left acme's rows and data files alone.
    assert keys(final, "acme") == acme_truth
    assert {k: v for k, v in table.day_files().items() if k[0] == "acme"} == {
        k: v for k, v in files_after_acme.items() if k[0] == "acme"
    }
    assert keys(final) == sorted(want)
    # Then nothing is left to find: no version, only the count probes.
    assert third["changed_days"] == []
    assert third["table_versions"] == []
    assert third["requests"] == ASKED
    assert len(table.versions()) == len(versions) + len(first["re_extracted"]) + 1


def test_a_table_extracted_with_other_filters_is_refused_before_any_request(
    table: Table,
) -> None:
    january = DateWindow(date(2024, 1, 1), date(2024, 1, 8))
    with SandboxServer(CONFIG) as server:
        owners = tuple(sorted({r["ownerId"] for r in server.records[:50]}))
        extract(server, table.sink(), january, owner_ids=owners)
        before = table.state()
        server.reset_stats()
        with pytest.raises(LuccaConfigError, match="owner_ids"):
            reconcile(server, table.sink())
        with pytest.raises(LuccaConfigError, match="owner_ids"):
            reconcile(server, table.sink(), ReconcileRequest(owner_ids=owners[1:]))
        assert server.stats()["requests"] == 0
        summary = reconcile(server, table.sink(), ReconcileRequest(owner_ids=owners[::-1]))

    assert table.state() == before
    assert summary["changed_days"] == []


def s3_objects(endpoint: str, bucket: str) -> dict[str, tuple[str, Any]]:
    """Every object of the bucket: key -> (ETag, LastModified)."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {
        item["Key"]: (item["ETag"], item["LastModified"])
        for page in pages
        for item in page.get("Contents", [])
    }


@pytest.mark.slow
def test_the_operator_reconciles_a_delta_table_on_s3(
    s3_bucket: str, moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the operators and an Airflow connection to a real S3 API (moto): no object
    written when nothing changed; a changed day is one new version, its own files only."""
    output = f"s3://aws_local@{s3_bucket}/lucca/realized_trainings"
    january = {"session_end_from": "2024-01-01", "session_end_until": "2024-02-01"}
    context: dict[str, Any] = {"run_id": "manual__s3", "params": {}}
    with SandboxServer(CONFIG) as server:
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(server.url))
        RealizedTrainingsOperator(
            task_id="extract", output_path=output, file_format="delta", **january
        ).execute(context)
        reconciler = RealizedTrainingsReconcileOperator(
            task_id="reconcile", output_path=output, file_format="delta"
        )
        before = s3_objects(moto_s3, s3_bucket)
        unchanged = reconciler.execute(context)
        assert s3_objects(moto_s3, s3_bucket) == before

        day = busy_day(server, date(2024, 1, 12))
        server.mutate(flip_ids=ids_on(server, day)[:1])
        changed = reconciler.execute(context)
        january_truth = [row for row in truth(server) if row[1] < "2024-02-01"]

    assert unchanged["changed_days"] == []
    assert unchanged["table_versions"] == []
    assert [change["day"] for change in changed["changed_days"]] == [day.isoformat()]
    assert changed["table_versions"] == [1]
    after = s3_objects(moto_s3, s3_bucket)
    new = sorted(key.split("/", 2)[2] for key in set(after) - set(before))
    assert new[0] == "_delta_log/00000000000000000001.json"
    assert all(key.startswith(f"session_end_on={day}/") for key in new[1:])
    assert len(new) > 1
    assert {k: v for k, v in after.items() if k in before} == before  # nothing rewritten
    table = deltalake.DeltaTable(
        f"s3://{s3_bucket}/lucca/realized_trainings",
        storage_options={
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": moto_s3,
            "AWS_ALLOW_HTTP": "true",
        },
    )
    assert keys(table.to_pyarrow_table().to_pylist()) == january_truth
