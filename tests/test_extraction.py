"""Extraction into committed daily partitions, against the Lucca sandbox and a local disk.

Everything is read back through :func:`tests.helpers.read_dataset`, a reader that follows the
manifests (it opens only the files a ``_manifest.json`` lists, and checks their sizes, checksums
and counts), because that is the contract the commit protocol promises to readers.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import logging
import random
import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import (
    ClientConfig,
    LuccaClient,
    LuccaResponseError,
)
from airflow_provider_lucca.extraction import commit
from airflow_provider_lucca.extraction.errors import LuccaDataChangedError, LuccaStorageError
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY, decode_part, read_dataset, tree

LOG = logging.getLogger("tests.extraction")
MANIFEST = "_manifest.json"

# The JSON-schema object the published response example has where ``training`` should be.
SCHEMA_SHAPED_TRAINING: dict[str, Any] = {
    "type": "object",
    "readonly": True,
    "properties": {
        "id": {"type": "integer", "format": "int32", "readOnly": True},
        "title": {"type": "string", "readonly": True},
        "categoryId": {"type": "integer", "readOnly": True},
        "providerUrl": {"type": "string", "format": "uri", "readOnly": True},
        "level": {
            "type": "string",
            "enum": ["Beginner", "Middle", "Expert"],
            "readOnly": True,
        },
    },
}
ODD_DAY = "2025-06-10"


def odd_records() -> list[dict[str, Any]]:
    """Records whose values stress exactness: decimals, nulls, unknown fields, odd shapes."""
    training = {
        "id": 45,
        "title": "Mastering French: From Basics to Fluency",
        "categoryId": 1,
        "providerUrl": "https://elan-francais.fr",
        "level": "Beginner",
    }
    base = {"ownerId": 416, "sessionStartsOn": "2025-06-09", "sessionEndsOn": ODD_DAY}
    return [
        {"id": 900001, **base, "training": training, "hasAttended": True, "durationInHours": 2.35},
        {
            "id": 900002,
            **base,
            "training": training,
            "trainingDemandId": None,
            "sessionId": None,
            "hasAttended": False,
            "durationInHours": 0.1,
        },
        {
            "id": 900003,
            **base,
            "training": SCHEMA_SHAPED_TRAINING,
            "trainingDemandId": 4356,
            "sessionId": 12,
            "hasAttended": True,
            "durationInHours": 1234567.89,
        },
        {
            "id": 900004,
            **base,
            "training": training,
            "hasAttended": True,
            "durationInHours": 14,
            "customField": {"note": "déjà vu ✓", "values": [1, 2.5, None]},
        },
        {
            "id": 900005,
            "ownerId": "416",  # a string where the spec says integer
            "sessionStartsOn": "2025-06-09",
            "sessionEndsOn": ODD_DAY,
            "durationInHours": 1.005,  # three decimals: no decimal(12, 2) holds it
        },
    ]


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def client(sandbox: SandboxServer) -> Iterator[LuccaClient]:
    with LuccaClient(
        ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    ) as lucca:
        yield lucca


@pytest.fixture
def out(tmp_path: Path) -> ObjectStoragePath:
    return ObjectStoragePath("file://" + str(tmp_path / "realized_trainings"))


def d(text: str) -> date:
    return date.fromisoformat(text)


def extract(
    client: LuccaClient,
    output: ObjectStoragePath,
    start: str,
    until: str,
    **options: Any,
) -> dict[str, Any]:
    run_id = options.pop("run_id", None)
    request = ExtractionRequest(window=DateWindow(d(start), d(until)), **options)
    return extract_realized_trainings(client, request, output, log=LOG, run_id=run_id)


def days(start: str, until: str) -> list[str]:
    first, end = d(start), d(until)
    return [(first + timedelta(n)).isoformat() for n in range((end - first).days)]


def partition_path(base: ObjectStoragePath, day: str) -> ObjectStoragePath:
    return base / f"session_end_on={day}"


def manifests(base: ObjectStoragePath) -> dict[str, dict[str, Any]]:
    return {
        directory.name.partition("=")[2]: json.loads((directory / MANIFEST).read_bytes())
        for directory in base.iterdir()
        if (directory / MANIFEST).exists()
    }


def expected(sandbox: SandboxServer, start: str, until: str, **filters: Any) -> dict[str, Any]:
    """What the dataset must hold for ``[start, until)``: every day, records sorted by id."""
    owners = filters.get("owner_ids")
    attended = filters.get("has_attended")
    result: dict[str, list[dict[str, Any]]] = {day: [] for day in days(start, until)}
    for record in sandbox.records:
        day = record["sessionEndsOn"]
        if day not in result:
            continue
        if owners is not None and record["ownerId"] not in owners:
            continue
        if attended is not None and record.get("hasAttended", True) is not attended:
            continue
        result[day].append(record)
    for records in result.values():
        records.sort(key=lambda r: r["id"])
    return result


def assert_only_listed_files(base: ObjectStoragePath) -> None:
    """No stale, orphan or temporary file next to a manifest: the directory is what it lists."""
    for directory in Path(base.path).iterdir():
        manifest = json.loads((directory / MANIFEST).read_bytes())
        listed = {entry["name"] for entry in manifest["files"]}
        on_disk = {path.name for path in directory.iterdir()}
        assert on_disk == {MANIFEST, *listed}, directory.name


def day_ids(sandbox: SandboxServer, day: str) -> list[int]:
    return sorted(r["id"] for r in sandbox.records if r["sessionEndsOn"] == day)


def random_split(rng: random.Random, start: str, until: str) -> list[tuple[str, str]]:
    inner = days(start, until)[1:]
    cuts = sorted(rng.sample(inner, rng.randint(1, min(8, len(inner)))))
    edges = [start, *cuts, until]
    return list(itertools.pairwise(edges))


# --------------------------------------------------------------------------- exactly once


@pytest.mark.slow
@pytest.mark.parametrize("bounds", ["exclusive", "inclusive"])
def test_any_split_into_adjacent_windows_writes_each_record_exactly_once(
    sandbox: SandboxServer, client: LuccaClient, tmp_path: Path, bounds: str
) -> None:
    sandbox.configure(bounds=bounds)
    start, until = "2025-02-20", "2025-04-08"
    want = expected(sandbox, start, until)
    assert sum(map(len, want.values())) > 150
    rng = random.Random(f"split-{bounds}")
    splits = [random_split(rng, start, until) for _ in range(3)]
    splits.append([(day, (d(day) + timedelta(1)).isoformat()) for day in days(start, until)])
    splits.append([(start, until)])
    outside = 0
    for number, windows in enumerate(splits):
        base = ObjectStoragePath(f"file://{tmp_path}/split-{number}")
        rng.shuffle(windows)  # the order of the runs must not matter either
        for first, end in windows:
            outside += extract(client, base, first, end)["outside_window"]
        got = read_dataset(base)
        assert got == want, windows
        ids = [r["id"] for records in got.values() for r in records]
        assert len(ids) == len(set(ids))
        assert all(r["sessionEndsOn"] == day for day, records in got.items() for r in records)
    if bounds == "inclusive":
        # The superset the API sent was really trimmed on the client, not just never sent.
        assert outside > 0


def test_overlapping_reruns_keep_one_copy_of_each_record(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    for first, end in [
        ("2025-03-01", "2025-03-10"),
        ("2025-03-05", "2025-03-15"),
        ("2025-03-01", "2025-03-15"),
        ("2025-03-03", "2025-03-04"),
        ("2025-03-05", "2025-03-15"),
    ]:
        extract(client, out, first, end)
    assert read_dataset(out) == expected(sandbox, "2025-03-01", "2025-03-15")
    assert_only_listed_files(out)


def test_duplicate_ids_from_the_api_are_written_once(
    sandbox: SandboxServer,
    client: LuccaClient,
    out: ObjectStoragePath,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = client.paginate

    def repeating(path: str, params: Any, **options: Any) -> Iterator[Any]:
        # The server lists one record twice; its count is of distinct records.
        for page in original(path, params, **options):
            items = page.items + page.items[:1] if page.number == 1 else page.items
            yield dataclasses.replace(page, items=items)

    monkeypatch.setattr(client, "paginate", repeating)
    summary = extract(client, out, "2025-03-01", "2025-03-08")
    assert read_dataset(out) == expected(sandbox, "2025-03-01", "2025-03-08")
    assert summary["duplicates_dropped"] == 1
    assert sum(m["duplicates_dropped"] for m in manifests(out).values()) == 1


def shifted_page(client: LuccaClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record moved while paging: the boundary repeats one record and another is never sent,
    so the raw number of items still equals the count."""
    original = client.paginate

    def shifting(path: str, params: Any, **options: Any) -> Iterator[Any]:
        last: dict[str, Any] | None = None
        for page in original(path, params, **options):
            items = page.items
            if page.number == 2 and last is not None:
                items = [last, *items[1:]]
            last = items[-1]
            yield dataclasses.replace(page, items=items)

    monkeypatch.setattr(client, "paginate", shifting)


def test_a_page_shift_on_every_read_fails_after_the_rereads_and_commits_nothing(
    sandbox: SandboxServer,
    client: LuccaClient,
    out: ObjectStoragePath,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extract(client, out, "2025-03-01", "2025-04-01")
    before = manifests(out)
    shifted_page(client, monkeypatch)
    sandbox.reset_stats()

    with pytest.raises(
        LuccaDataChangedError,
        match=r"each of 3 reads .* 1 records were served twice and 1 never.*Nothing was committed",
    ):
        extract(client, out, "2025-03-01", "2025-04-01")

    assert manifests(out) == before
    assert sandbox.stats()["requests"] == 3 * 2  # three reads of two pages, then it gave up


def test_a_page_shift_in_one_read_is_healed_by_reading_again(
    sandbox: SandboxServer,
    client: LuccaClient,
    out: ObjectStoragePath,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = client.paginate
    reads = 0

    def shifting_once(path: str, params: Any, **options: Any) -> Iterator[Any]:
        nonlocal reads
        reads += 1
        last: dict[str, Any] | None = None
        for page in original(path, params, **options):
            items = page.items
            if reads == 1 and page.number == 2 and last is not None:
                items = [last, *items[1:]]
            last = items[-1]
            yield dataclasses.replace(page, items=items)

    monkeypatch.setattr(client, "paginate", shifting_once)
    summary = extract(client, out, "2025-03-01", "2025-04-01")
    assert summary["reads"] == 2
    assert summary["duplicates_dropped"] == 0
    assert read_dataset(out) == expected(sandbox, "2025-03-01", "2025-04-01")


def odd_id(n: int, **fields: Any) -> dict[str, Any]:
    """Record ``n`` of the odd-id set (its marker: sessionStartsOn 1999-01-0n)."""
    dates = {"sessionStartsOn": f"1999-01-0{n}", "sessionEndsOn": ODD_DAY}
    return {**fields, **dates, "durationInHours": n}


ODD_ID_RECORDS: list[dict[str, Any]] = [
    odd_id(1, id=None, ownerId=1),
    odd_id(2, id=None, ownerId=2),
    odd_id(3, ownerId=3),
    odd_id(4, ownerId=4),
    odd_id(5, id="a\tb\nc", ownerId=5),
    odd_id(6, id=2**70, ownerId=2**64, training={"id": 2**63, "title": "Too big"}),
]


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_records_without_id_or_with_odd_ids_are_all_kept_intact(
    client: LuccaClient,
    out: ObjectStoragePath,
    monkeypatch: pytest.MonkeyPatch,
    file_format: str,
) -> None:
    original = client.paginate

    def with_odd_ids(path: str, params: Any, **options: Any) -> Iterator[Any]:
        # Shapes the spec does not promise against: only real duplicate ids may be dropped.
        for page in original(path, params, **options):
            assert page.count is not None
            items = [*page.items, *ODD_ID_RECORDS]
            yield dataclasses.replace(page, items=items, count=page.count + len(ODD_ID_RECORDS))

    monkeypatch.setattr(client, "paginate", with_odd_ids)
    summary = extract(client, out, ODD_DAY, "2025-06-11", file_format=file_format)
    assert summary["duplicates_dropped"] == 0
    got = read_dataset(out, sort_by_id=False)[ODD_DAY]
    odd = sorted(
        (row for row in got if str(row["sessionStartsOn"]).startswith("1999")),
        key=lambda row: str(row["sessionStartsOn"]),
    )
    assert len(odd) == len(ODD_ID_RECORDS)
    if file_format == "jsonl":
        assert odd == ODD_ID_RECORDS
        return
    extras = [json.loads(row["_extra"]) if row["_extra"] else {} for row in odd]
    assert [row["durationInHours"] for row in odd] == [Decimal(n) for n in range(1, 7)]
    assert extras[4] == {"id": "a\tb\nc"}
    assert extras[5] == {
        "id": 2**70,
        "ownerId": 2**64,
        "training": {"id": 2**63, "title": "Too big"},
    }
    assert odd[5]["id"] is odd[5]["ownerId"] is odd[5]["training"] is None


# --------------------------------------------------------------------------- late data, re-runs


def test_lookback_refreshes_earlier_days_with_late_and_deleted_records(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    extract(client, out, "2025-03-05", "2025-03-11")
    before = manifests(out)
    late = {
        **sandbox.records[0],
        "id": 800001,
        "sessionStartsOn": "2025-03-08",
        "sessionEndsOn": "2025-03-08",
    }
    deleted = day_ids(sandbox, "2025-03-09")[0]
    sandbox.configure(add_records=[late], delete_ids=[deleted])

    # Without lookback the past days are not touched.
    extract(client, out, "2025-03-11", "2025-03-12")
    assert read_dataset(out)["2025-03-08"] == before_records(before, out, "2025-03-08")
    assert 800001 not in {r["id"] for r in read_dataset(out)["2025-03-08"]}

    summary = extract(client, out, "2025-03-11", "2025-03-12", lookback_days=3)
    got = read_dataset(out)
    assert got == expected(sandbox, "2025-03-05", "2025-03-12")
    assert late in got["2025-03-08"]
    assert deleted not in {r["id"] for r in got["2025-03-09"]}
    assert summary["extracted_window"] == {"from": "2025-03-08", "until": "2025-03-12"}
    assert summary["window"] == {"from": "2025-03-11", "until": "2025-03-12"}
    after = manifests(out)
    # Days before the lookback keep the first run's manifest, refreshed days have the new one.
    for day in days("2025-03-05", "2025-03-08"):
        assert after[day] == before[day]
    for day in days("2025-03-08", "2025-03-12"):
        assert after[day]["run"]["token"] == summary["run_token"]
        assert after[day]["window"] == {
            "from": "2025-03-08",
            "until": "2025-03-12",
            "requested_from": "2025-03-11",
            "lookback_days": 3,
        }
    assert_only_listed_files(out)


def before_records(
    manifests_before: dict[str, dict[str, Any]], base: ObjectStoragePath, day: str
) -> list[dict[str, Any]]:
    """The records of a day as its earlier manifest listed them (the files must still exist)."""
    directory = partition_path(base, day)
    records: list[dict[str, Any]] = []
    for entry in manifests_before[day]["files"]:
        records.extend(decode_part(entry["name"], (directory / entry["name"]).read_bytes()))
    return sorted(records, key=lambda r: r["id"])


def test_rerun_after_deletions_and_additions_leaves_exactly_the_new_data(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    start, until = "2025-03-01", "2025-03-08"
    first = extract(client, out, start, until)
    emptied = "2025-03-03"
    removed = [*day_ids(sandbox, emptied), day_ids(sandbox, "2025-03-05")[0]]
    assert len(removed) > 1
    added = {**sandbox.records[5], "id": 800002, "sessionEndsOn": "2025-03-06"}
    sandbox.configure(delete_ids=removed, add_records=[added])

    second = extract(client, out, start, until, file_format="parquet")
    third = extract(client, out, start, until)
    got = read_dataset(out)
    assert got == expected(sandbox, start, until)
    assert got[emptied] == []
    assert added in got["2025-03-06"]
    assert_only_listed_files(out)
    names = {name for name in tree(out) if not name.endswith(MANIFEST)}
    assert names, "no part file at all"
    assert all(third["run_token"] in name for name in names)
    assert not any(first["run_token"] in name or second["run_token"] in name for name in names)
    assert not any(name.endswith(".parquet") for name in names)
    manifest = manifests(out)[emptied]
    assert manifest["record_count"] == 0
    assert manifest["files"] == []


def test_failure_between_parts_and_manifests_keeps_previous_data_readable(
    sandbox: SandboxServer,
    client: LuccaClient,
    out: ObjectStoragePath,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start, until = "2025-03-01", "2025-03-08"
    extract(client, out, start, until)
    old_data = read_dataset(out)
    old_tree = tree(out)
    old_manifests = {name: data for name, data in old_tree.items() if name.endswith(MANIFEST)}
    assert len(old_manifests) == 7

    sandbox.configure(
        delete_ids=day_ids(sandbox, "2025-03-02")[:2],
        add_records=[{**sandbox.records[3], "id": 800003, "sessionEndsOn": "2025-03-04"}],
    )
    original = commit.write_whole
    calls = 0

    def dies_once(path: Any, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("injected: the store failed on the first manifest")
        original(path, data)

    monkeypatch.setattr(commit, "write_whole", dies_once)
    with pytest.raises(
        LuccaStorageError, match=r"failed while writing manifests.*injected"
    ) as info:
        extract(client, out, start, until)
    assert calls == 2  # the failed manifest, then putting the day's previous one back
    assert info.value.phase == "manifests"
    assert info.value.committed_days == ()
    assert "no day changed" in str(info.value)

    # Readers still see the previous, complete data: every manifest and listed file intact, and
    # the failed run removed its own parts, so a reader that lists files sees no extra rows.
    assert read_dataset(out) == old_data
    assert tree(out) == old_tree

    monkeypatch.setattr(commit, "write_whole", original)
    extract(client, out, start, until)
    assert read_dataset(out) == expected(sandbox, start, until)
    assert_only_listed_files(out)


# --------------------------------------------------------------------------- completeness


def drop_first_record(client: LuccaClient, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Make the client lose one record while the server still counts it."""
    original = client.paginate
    dropped: list[dict[str, Any]] = []

    def losing(path: str, params: Any, **options: Any) -> Iterator[Any]:
        for page in original(path, params, **options):
            if not dropped and page.items:
                dropped.append(page.items[0])
                page = dataclasses.replace(page, items=page.items[1:])
            yield page

    monkeypatch.setattr(client, "paginate", losing)
    return dropped


def test_count_mismatch_fails_and_commits_nothing(
    sandbox: SandboxServer,
    client: LuccaClient,
    out: ObjectStoragePath,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start, until = "2025-03-01", "2025-03-08"
    extract(client, out, start, until)
    committed = tree(out)
    sandbox.configure(delete_ids=day_ids(sandbox, "2025-03-02")[:1])  # a run would change data
    dropped = drop_first_record(client, monkeypatch)
    with pytest.raises(LuccaResponseError, match=r"count=\d+"):
        extract(client, out, start, until)
    assert dropped
    assert tree(out) == committed

    fresh = ObjectStoragePath(f"file://{tmp_path}/fresh")
    dropped.clear()
    with pytest.raises(LuccaResponseError):
        extract(client, fresh, start, until)
    assert not Path(fresh.path).exists() or tree(fresh) == {}


def test_count_mismatch_warns_and_commits_when_not_strict(
    sandbox: SandboxServer,
    client: LuccaClient,
    out: ObjectStoragePath,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    start, until = "2025-03-01", "2025-03-08"
    want = expected(sandbox, start, until)
    total = sum(map(len, want.values()))
    dropped = drop_first_record(client, monkeypatch)
    with caplog.at_level(logging.WARNING, logger=LOG.name):
        summary = extract(client, out, start, until, fail_on_count_mismatch=False)
    assert len(dropped) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"count={total}" in r.getMessage() for r in warnings)
    lost = dropped[0]
    want[lost["sessionEndsOn"]].remove(lost)
    assert read_dataset(out) == want
    assert summary["reported_count"] == total
    assert summary["received"] == total - 1
    for manifest in manifests(out).values():
        assert manifest["api"] == {"reported_count": total, "received": total - 1}


# --------------------------------------------------------------------------- layout, manifests


def test_empty_days_get_a_manifest_with_no_files(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    sandbox.configure(delete_ids=day_ids(sandbox, "2025-03-04"))
    extract(client, out, "2025-03-03", "2025-03-06")
    extract(client, out, "2026-02-01", "2026-02-04")  # after the sandbox's data: all empty
    got = read_dataset(out)
    assert sorted(got) == [*days("2025-03-03", "2025-03-06"), *days("2026-02-01", "2026-02-04")]
    found = manifests(out)
    for day in ["2025-03-04", *days("2026-02-01", "2026-02-04")]:
        assert got[day] == []
        assert found[day]["record_count"] == 0
        assert found[day]["files"] == []
    assert got["2025-03-03"]
    assert got["2025-03-05"]
    assert_only_listed_files(out)


def test_manifests_describe_their_files_and_the_run(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    window = [r for r in sandbox.records if "2025-03-01" <= r["sessionEndsOn"] < "2025-03-06"]
    owners = sorted({r["ownerId"] for r in window})[:6]
    summary = extract(
        client,
        out,
        "2025-03-03",
        "2025-03-06",
        lookback_days=2,
        owner_ids=tuple(owners),
        has_attended=True,
        run_id="manual__2025-03-06",
    )
    want = expected(sandbox, "2025-03-01", "2025-03-06", owner_ids=owners, has_attended=True)
    assert read_dataset(out) == want
    total = sum(map(len, want.values()))
    assert total > 0
    found = manifests(out)
    assert sorted(found) == days("2025-03-01", "2025-03-06")
    token = summary["run_token"]
    for day, manifest in found.items():
        directory = Path(partition_path(out, day).path)
        assert manifest["manifest_version"] == 1
        assert manifest["partition"] == {"session_end_on": day}
        assert manifest["dataset"] == "lucca.realized_trainings"
        assert manifest["file_format"] == "jsonl"
        assert manifest["record_count"] == len(want[day])
        assert manifest["duplicates_dropped"] == 0
        assert manifest["window"] == {
            "from": "2025-03-01",
            "until": "2025-03-06",
            "requested_from": "2025-03-03",
            "lookback_days": 2,
        }
        assert manifest["filters"] == {
            "owner_ids": owners,
            "has_attended": True,
            "training_ids": None,
        }
        assert manifest["api"] == {"reported_count": total, "received": total}
        assert manifest["run"]["token"] == token
        assert manifest["run"]["run_id"] == "manual__2025-03-06"
        assert datetime.fromisoformat(manifest["run"]["extracted_at"]).tzinfo is not None
        assert isinstance(manifest["provider_version"], str)
        assert sum(entry["records"] for entry in manifest["files"]) == len(want[day])
        for entry in manifest["files"]:
            assert re.fullmatch(rf"part-\d+-{token}\.jsonl\.gz", entry["name"])
            data = (directory / entry["name"]).read_bytes()
            assert entry["bytes"] == len(data)
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
            lines = gzip.decompress(data).splitlines()  # bytes: splits on \n and \r only
            assert entry["records"] == len(lines)
    assert summary["partitions"] == {day: len(records) for day, records in want.items()}
    assert summary["records"] == total
    json.dumps(summary)


# --------------------------------------------------------------------------- formats


def raw_api_body(sandbox: SandboxServer, day: str) -> str:
    """The API's own text for one day (the sandbox reads the bounds as exclusive here)."""
    before = (d(day) - timedelta(1)).isoformat()
    after = (d(day) + timedelta(1)).isoformat()
    response = requests.get(
        sandbox.api_url,
        params={"sessionEndOnAfter": before, "sessionEndOnBefore": after, "limit": "100"},
        headers={"Authorization": f"lucca application={SANDBOX_KEY}"},
        timeout=10,
    )
    response.raise_for_status()
    return response.content.decode("utf-8")


def test_jsonl_holds_the_records_exactly_as_received(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    odd = odd_records()
    sandbox.configure(add_records=odd)
    extract(client, out, ODD_DAY, "2025-06-11")
    manifest = manifests(out)[ODD_DAY]
    (entry,) = manifest["files"]
    text = gzip.decompress((partition_path(out, ODD_DAY) / entry["name"]).read_bytes()).decode()
    lines = text.split("\n")[:-1]  # str.splitlines() would also split on U+2028
    body = raw_api_body(sandbox, ODD_DAY)
    served = json.loads(body)["items"]
    assert len(lines) == len(served) == manifest["record_count"]
    for line in lines:
        assert line in body  # byte for byte the JSON object the API sent
    by_id = {json.loads(line)["id"]: line for line in lines}
    assert sorted(by_id) == sorted(r["id"] for r in served)
    for record in odd:
        parsed = json.loads(by_id[record["id"]], parse_float=Decimal)
        assert list(parsed) == list(record)  # same keys, same order, none added or lost
    durations = {
        key: re.search(r'"durationInHours":([^,}]+)', by_id[key]).group(1)  # type: ignore[union-attr]
        for key in (900001, 900002, 900003, 900004, 900005)
    }
    assert durations == {
        900001: "2.35",
        900002: "0.1",
        900003: "1234567.89",
        900004: "14",
        900005: "1.005",
    }
    assert json.loads(by_id[900003])["training"] == SCHEMA_SHAPED_TRAINING
    assert json.loads(by_id[900004])["customField"] == {
        "note": "déjà vu ✓",
        "values": [1, 2.5, None],
    }
    assert '"trainingDemandId":null,"sessionId":null' in by_id[900002]
    assert "trainingDemandId" not in by_id[900001]
    assert read_dataset(out)[ODD_DAY] == sorted(served, key=lambda r: r["id"])


def test_parquet_has_an_explicit_schema_exact_decimals_and_keeps_misfits(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sandbox.configure(add_records=odd_records())
    extract(client, out, "2025-06-09", "2025-06-12", file_format="parquet")
    found = manifests(out)
    assert sorted(found) == days("2025-06-09", "2025-06-12")
    tables = []
    for day, manifest in found.items():
        assert manifest["file_format"] == "parquet"
        for entry in manifest["files"]:
            assert entry["name"].endswith(".parquet")
            data = (partition_path(out, day) / entry["name"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry["sha256"]
            tables.append(pq.read_table(io.BytesIO(data)))
    schema = tables[0].schema
    assert all(table.schema == schema for table in tables)
    types = {field.name: field.type for field in schema}
    assert types["id"] == pa.int64()
    assert types["ownerId"] == pa.int64()
    assert types["trainingDemandId"] == pa.int64()
    assert types["sessionId"] == pa.int64()
    assert types["sessionStartsOn"] == pa.date32()
    assert types["sessionEndsOn"] == pa.date32()
    assert types["hasAttended"] == pa.bool_()
    assert types["durationInHours"] == pa.decimal128(12, 2)
    assert types["_extra"] == pa.string()
    assert pa.types.is_struct(types["training"])
    assert {f.name: f.type for f in types["training"]} == {
        "id": pa.int64(),
        "title": pa.string(),
        "categoryId": pa.int64(),
        "providerUrl": pa.string(),
        "level": pa.string(),
    }
    assert all(field.nullable for field in schema)

    rows = {row["id"]: row for table in tables for row in table.to_pylist()}
    sources = {
        r["id"]: r for r in sandbox.records if "2025-06-09" <= r["sessionEndsOn"] < "2025-06-12"
    }
    assert sorted(rows) == sorted(sources)
    exact = {900001: "2.35", 900002: "0.10", 900003: "1234567.89", 900004: "14.00"}
    for key, text in exact.items():
        assert rows[key]["durationInHours"] == Decimal(text)
        assert str(rows[key]["durationInHours"]) == text
    assert rows[900002]["trainingDemandId"] is None
    assert rows[900002]["hasAttended"] is False
    # Whatever does not fit its column is null there and kept, as received, in _extra.
    assert rows[900001]["_extra"] is None
    assert rows[900003]["training"] is None
    assert json.loads(rows[900003]["_extra"]) == {"training": SCHEMA_SHAPED_TRAINING}
    assert json.loads(rows[900004]["_extra"]) == {
        "customField": {"note": "déjà vu ✓", "values": [1, 2.5, None]}
    }
    assert rows[900005]["ownerId"] is None
    assert rows[900005]["durationInHours"] is None
    assert json.loads(rows[900005]["_extra"]) == {"ownerId": "416", "durationInHours": 1.005}
    for key, source in sources.items():
        # A null and a missing key read back the same from Parquet (both are null).
        assert rebuild(rows[key]) == {k: v for k, v in source.items() if v is not None}, key


def rebuild(row: dict[str, Any]) -> dict[str, Any]:
    """The record a Parquet row stands for, in the API's JSON types (keys in any order)."""
    extra = json.loads(row["_extra"]) if row["_extra"] else {}
    record: dict[str, Any] = {}
    for key, value in row.items():
        if key == "_extra" or key in extra or value is None:
            continue
        if isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = float(value) if value != value.to_integral_value() else int(value)
        elif key == "training":
            value = {k: v for k, v in value.items() if v is not None}
        record[key] = value
    return {**record, **extra}


def test_same_records_give_the_same_checksums_on_every_run(
    client: LuccaClient, out: ObjectStoragePath
) -> None:
    extract(client, out, "2025-03-01", "2025-03-04")
    first = {day: [f["sha256"] for f in m["files"]] for day, m in manifests(out).items()}
    extract(client, out, "2025-03-01", "2025-03-04")
    second = {day: [f["sha256"] for f in m["files"]] for day, m in manifests(out).items()}
    assert first == second  # new part names, same bytes: the checksum identifies the content


def test_reader_keeps_records_whose_text_holds_unicode_line_separators(
    sandbox: SandboxServer, client: LuccaClient, out: ObjectStoragePath
) -> None:
    from airflow_provider_lucca.extraction.reader import read_partition

    title = "Sécurité\u2028incendie\u2029niveau\x85deux"
    record = {"id": 990001, "ownerId": 7, "sessionEndsOn": ODD_DAY, "durationInHours": 2.35}
    sandbox.configure(add_records=[{**record, "training": {"id": 1, "title": title}}])
    extract(client, out, ODD_DAY, "2025-06-11")

    rows = {row["id"]: row for row in read_partition(out, date.fromisoformat(ODD_DAY))}
    assert rows[990001]["training"]["title"] == title
    assert rows[990001]["durationInHours"] == Decimal("2.35")
    assert len(rows) == manifests(out)[ODD_DAY]["record_count"]
