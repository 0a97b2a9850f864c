"""Reconciling a files dataset (jsonl, parquet) with Lucca's counts, against the sandbox.

What a user would notice if it broke: the weekly check writing to a history where nothing
changed (a file, a manifest, a lock), or spending more than two requests a month on it; a late
import, a deletion or an attendance flip in an old month left unfound, or found and re-extracted
with more than its own days; a day emptied in Lucca, or never extracted, missed; counts compared
under other filters than the dataset's; old manifests (before ``attended_count``) read wrong; a
month Lucca keeps answering 408 on failing the check instead of being counted by halves.

The expected changes are computed from the sandbox's records before and after each mutation (a
day changed when its (records, attended) counts did), never from what the reconciliation says.
Extracting three years through the commit protocol takes seconds, so each history is extracted
once per module and copied into each test; the sandbox regenerates the same records from the
same config, whatever its bounds reading.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Iterable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import LuccaConfigError, RetryPolicy
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.reconcile import (
    ReconcileRequest,
    ReconcileSummary,
    reconcile_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.operators.reconcile import RealizedTrainingsReconcileOperator
from lucca_sandbox import MutationSpec, SandboxConfig, SandboxServer
from lucca_sandbox.mutations import apply_mutations
from tests.helpers import SANDBOX_KEY, client_for, lucca_conn_json, read_dataset, tree

LOG = logging.getLogger("tests.reconcile")
ONE_DAY = timedelta(days=1)
LOCK = "_lock.json"
MANIFEST = "_manifest.json"
#: Enough attempts to reach a split on 408, with millisecond waits.
FAST_RETRY = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.002, jitter=0.0)
#: Requests one changed day may add to the check, derived from the drill-down: a differing
#: window is cut in halves (one count of its first half: 2 requests) down to one day, at most
#: ceil(log2(33)) = 6 cuts from a month read with its two edge days (a month counted before the
#: bounds reading is known, inclusive), or read whole once Lucca counts at most a page in it
#: (its request covers its two edge days too: at most 2 pages).
PER_CHANGED_DAY = 2 * math.ceil(math.log2(33)) + 2


@dataclasses.dataclass(frozen=True)
class History:
    """A sandbox history and the window extracted from it (every day of it)."""

    name: str
    config: SandboxConfig

    @property
    def window(self) -> DateWindow:
        return DateWindow(self.config.start, self.config.end + ONE_DAY)

    @property
    def months(self) -> int:
        start, end = self.config.start, self.config.end
        return (end.year - start.year) * 12 + end.month - start.month + 1

    def sandbox(self, bounds: str = "exclusive", **changes: Any) -> SandboxServer:
        return SandboxServer(dataclasses.replace(self.config, bounds=bounds, **changes))


#: 36 months, ~83 records a month: a month that differs fits in a page and is read at once.
THREE_YEARS = History(
    "three-years", SandboxConfig(records=3000, start=date(2023, 1, 1), end=date(2025, 12, 31))
)
#: 6 months, ~250 records a month: a month that differs is cut in halves before it is read.
HALF_YEAR = History(
    "half-year", SandboxConfig(records=1500, start=date(2024, 1, 1), end=date(2024, 6, 30))
)

#: 4 months, ~150 records a month.
FOUR_MONTHS = History(
    "four-months", SandboxConfig(records=600, start=date(2024, 1, 1), end=date(2024, 4, 30))
)


class Templates:
    """Each (history, format, filters) extracted once, then copied for each test."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[tuple[str, str, str], Path] = {}

    def copy(self, history: History, fmt: str, dest: Path, **filters: Any) -> Path:
        key = (history.name, fmt, repr(sorted(filters.items())))
        if key not in self.built:
            root = self.base / f"{history.name}-{fmt}-{len(self.built)}"
            with history.sandbox() as server:
                extract(server, root, history.window, file_format=fmt, **filters)
            self.built[key] = root
        shutil.copytree(self.built[key], dest)
        return dest


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Templates:
    return Templates(tmp_path_factory.mktemp("templates"))


# --------------------------------------------------------------------------- helpers


def extract(server: SandboxServer, out: Path, window: DateWindow, **options: Any) -> Any:
    with client_for(server.url, api_key=SANDBOX_KEY) as client:
        return extract_realized_trainings(
            client,
            ExtractionRequest(window=window, **options),
            ObjectStoragePath(out.as_uri()),
            log=LOG,
        )


def reconcile(
    server: SandboxServer, out: Path, request: ReconcileRequest | None = None, **config: Any
) -> ReconcileSummary:
    with client_for(server.url, api_key=SANDBOX_KEY, **config) as client:
        return reconcile_realized_trainings(
            client, request or ReconcileRequest(), ObjectStoragePath(out.as_uri()), log=LOG
        )


def attended(record: dict[str, Any]) -> bool:
    return record.get("hasAttended", True) is True


def by_day(records: Iterable[dict[str, Any]], days: Iterable[date]) -> dict[str, list[Any]]:
    """The records of each of ``days`` (empty ones included), sorted by id."""
    result: dict[str, list[dict[str, Any]]] = {day.isoformat(): [] for day in days}
    for record in records:
        if record["sessionEndsOn"] in result:
            result[record["sessionEndsOn"]].append(record)
    return {day: sorted(rows, key=lambda r: r["id"]) for day, rows in result.items()}


def normal(record: dict[str, Any]) -> dict[str, Any]:
    """A record as the API's JSON without nulls; a Parquet row as the record it stands for."""
    if "_extra" in record:
        extra = json.loads(record["_extra"]) if record["_extra"] else {}
        record = {**{k: v for k, v in record.items() if k != "_extra" and k not in extra}, **extra}
    result: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, date):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = float(value)
        elif isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        if value is not None:
            result[key] = value
    return result


def same(dataset: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """A dataset (or the truth) in :func:`normal` records, for comparing jsonl and Parquet."""
    return {day: [normal(record) for record in rows] for day, rows in dataset.items()}


def counts(records: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """(records, attended) of each day that has records."""
    result: dict[str, tuple[int, int]] = {}
    for record in records:
        total, done = result.get(record["sessionEndsOn"], (0, 0))
        result[record["sessionEndsOn"]] = (total + 1, done + attended(record))
    return result


def changed(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
    """Day -> (counts before, counts after), for the days whose counts differ."""
    return {
        day: (before.get(day, (0, 0)), after.get(day, (0, 0)))
        for day in sorted(set(before) | set(after))
        if before.get(day, (0, 0)) != after.get(day, (0, 0))
    }


def expected_changes(
    diff: dict[str, tuple[tuple[int, int], tuple[int, int]]],
) -> list[dict[str, Any]]:
    """What ``changed_days`` must say for ``diff``: the day re-extracted with Lucca's records."""
    return [
        {
            "day": day,
            "committed": {"records": mine[0], "attended": mine[1]},
            "lucca": {"records": lucca[0], "attended": lucca[1]},
            "records_now": lucca[0],
        }
        for day, (mine, lucca) in diff.items()
    ]


def runs(days: Iterable[str]) -> list[dict[str, str]]:
    """Sorted ISO days as windows of consecutive days."""
    result: list[dict[str, str]] = []
    for day in sorted(date.fromisoformat(d) for d in days):
        if result and result[-1]["until"] == day.isoformat():
            result[-1]["until"] = (day + ONE_DAY).isoformat()
        else:
            result.append({"from": day.isoformat(), "until": (day + ONE_DAY).isoformat()})
    return result


def mtimes(root: Path) -> dict[str, int]:
    return {
        str(path.relative_to(root)): path.stat().st_mtime_ns
        for path in root.rglob("*")
        if path.is_file()
    }


def day_of(path: str) -> str | None:
    head = path.split("/", 1)[0]
    return head.removeprefix("session_end_on=") if head.startswith("session_end_on=") else None


def untouched_except(
    before: dict[str, bytes], after: dict[str, bytes], days: Iterable[str]
) -> None:
    """Every file outside ``days`` is as it was, and nothing else appeared."""
    skip = set(days)
    assert {p: b for p, b in before.items() if day_of(p) not in skip} == {
        p: b for p, b in after.items() if day_of(p) not in skip
    }


def requests_made(server: SandboxServer) -> list[dict[str, Any]]:
    """Each API request as its query (first values) with its status and window width."""
    made = []
    for entry in server.request_log()["requests"]:
        query = {key: values[0] for key, values in parse_qs(entry["query"]).items()}
        after, before = query.get("sessionEndOnAfter"), query.get("sessionEndOnBefore")
        width = None
        if after and before:
            width = (date.fromisoformat(before) - date.fromisoformat(after)).days
        made.append({**query, "status": entry["status"], "width": width})
    return made


def is_count_probe(request: dict[str, Any]) -> bool:
    return request.get("limit") == "0" and request.get("fields.root") == "count"


def days_with(records: list[dict[str, Any]], low: int, start: date) -> date:
    """The first day from ``start`` with at least ``low`` records."""
    per_day = counts(records)
    day = start
    while per_day.get(day.isoformat(), (0, 0))[0] < low:
        day += ONE_DAY
    return day


def ids_on(records: list[dict[str, Any]], day: date) -> list[int]:
    return sorted(r["id"] for r in records if r["sessionEndsOn"] == day.isoformat())


# --------------------------------------------------------------------------- nothing changed


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "history", "bounds"),
    [
        ("jsonl", THREE_YEARS, "exclusive"),
        ("jsonl", THREE_YEARS, "inclusive"),
        ("parquet", HALF_YEAR, "inclusive"),
    ],
    ids=["jsonl-3y-exclusive", "jsonl-3y-inclusive", "parquet-6m-inclusive"],
)
def test_nothing_changed_writes_nothing_and_costs_two_count_probes_a_month(
    templates: Templates, tmp_path: Path, fmt: str, history: History, bounds: str
) -> None:
    out = templates.copy(history, fmt, tmp_path / "out")
    before, stamps = tree(out), mtimes(out)
    assert LOCK not in before

    with history.sandbox(bounds) as server:
        summary = reconcile(server, out, ReconcileRequest(file_format=fmt))
        made = requests_made(server)

    assert tree(out) == before  # byte-identical, no lock left, no file added
    assert mtimes(out) == stamps  # not even rewritten with the same bytes
    assert summary["changed_days"] == []
    assert summary["re_extracted"] == []
    assert summary["records_rewritten"] == 0
    assert summary["months"] == history.months
    assert summary["window"] == {
        "from": history.window.start.isoformat(),
        "until": history.window.end.isoformat(),
    }
    assert summary["date_bounds"] == bounds  # learnt from the counts themselves
    # 3 years: 72 requests, against 30 to re-extract 3,000 records (1,000+ for 100,000).
    assert summary["requests"] == summary["check_requests"] == 2 * history.months
    assert len(made) == 2 * history.months
    assert all(is_count_probe(r) and r["status"] == 200 for r in made)
    assert sum(r.get("hasAttended") == "false" for r in made) == history.months


def test_a_root_with_nothing_committed_costs_no_request(tmp_path: Path) -> None:
    with HALF_YEAR.sandbox() as server:
        summary = reconcile(server, tmp_path / "empty")
        assert server.stats()["requests"] == 0
    assert summary["window"] is None
    assert summary["requests"] == 0
    assert tree(tmp_path) == {}


# --------------------------------------------------------------------------- mutations


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fmt", "history", "bounds"),
    [
        ("jsonl", THREE_YEARS, "inclusive"),
        ("parquet", HALF_YEAR, "exclusive"),
        ("parquet", HALF_YEAR, "inclusive"),
    ],
    ids=["jsonl-3y-inclusive", "parquet-6m-exclusive", "parquet-6m-inclusive"],
)
def test_a_late_import_a_deletion_and_a_flip_rewrite_only_their_days(
    templates: Templates, tmp_path: Path, fmt: str, history: History, bounds: str
) -> None:
    out = templates.copy(history, fmt, tmp_path / "out")
    before_files, stamps = tree(out), mtimes(out)
    with history.sandbox(bounds) as server:
        records = server.records
        start = history.config.start
        # A late CSV import of two records on an old day (a day of the history's second month).
        imported = days_with(records, 1, start + timedelta(days=40))
        # A deletion and a flip on two consecutive days further on: one run of two days.
        deleted = start + timedelta(days=100)
        while not (ids_on(records, deleted) and ids_on(records, deleted + ONE_DAY)):
            deleted += ONE_DAY
        flipped = deleted + ONE_DAY
        changes = server.mutate(
            seed=5,
            inserts=2,
            from_=imported,
            until=imported + ONE_DAY,
            delete_ids=ids_on(records, deleted)[:1],
            flip_ids=ids_on(records, flipped)[-1:],
        )
        diff = changed(counts(records), counts(server.records))
        # The three kinds, each on its day, each changing its day's counts.
        assert sorted(c["kind"] for c in changes) == ["delete", "flip", "insert", "insert"]
        assert set(diff) == {imported.isoformat(), deleted.isoformat(), flipped.isoformat()}

        summary = reconcile(server, out, ReconcileRequest(file_format=fmt))
        made = len(server.request_log()["requests"])
        truth = by_day(server.records, history.window.days())

    assert summary["changed_days"] == expected_changes(diff)
    assert summary["re_extracted"] == runs(diff)  # [imported], [deleted, flipped]
    assert len(summary["re_extracted"]) == 2
    assert summary["records_rewritten"] == sum(lucca[0] for _, lucca in diff.values())
    assert summary["date_bounds"] == bounds
    assert same(read_dataset(out)) == same(truth)
    after_files = tree(out)
    untouched_except(before_files, after_files, diff)
    assert {p: t for p, t in mtimes(out).items() if day_of(p) not in diff} == {
        p: t for p, t in stamps.items() if day_of(p) not in diff
    }
    for day in diff:
        path = f"session_end_on={day}/{MANIFEST}"
        assert after_files[path] != before_files[path]
    assert LOCK not in after_files
    # The budget: two probes a month, a bounded drill-down per changed day, then one request
    # per re-extracted run (each fits in one page).
    assert summary["requests"] == made
    assert summary["check_requests"] <= 2 * history.months + 2 + PER_CHANGED_DAY * len(diff)
    assert summary["requests"] - summary["check_requests"] == len(summary["re_extracted"])
    if history is THREE_YEARS:
        # Each month that differs holds less than a page (~83 records, edge days included):
        # it is read in one request, which gives each of its days' counts, instead of cut.
        months_changed = {day[:7] for day in diff}
        assert summary["check_requests"] == 2 * history.months + len(months_changed)


@pytest.mark.slow
def test_a_day_whose_records_were_all_deleted_is_emptied(
    templates: Templates, tmp_path: Path
) -> None:
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out")
    before_files = tree(out)
    with HALF_YEAR.sandbox() as server:
        records = server.records
        gone = days_with(records, 3, date(2024, 3, 12))
        server.mutate(delete_ids=ids_on(records, gone))
        diff = changed(counts(records), counts(server.records))
        assert list(diff) == [gone.isoformat()]
        summary = reconcile(server, out)
        truth = by_day(server.records, HALF_YEAR.window.days())

    assert summary["changed_days"] == expected_changes(diff)
    assert summary["changed_days"][0]["lucca"] == {"records": 0, "attended": 0}
    assert summary["re_extracted"] == runs(diff)
    manifest = json.loads((out / f"session_end_on={gone}" / MANIFEST).read_text())
    assert (manifest["record_count"], manifest["attended_count"], manifest["files"]) == (0, 0, [])
    assert same(read_dataset(out)) == same(truth)
    untouched_except(before_files, tree(out), diff)


@pytest.mark.slow
def test_a_month_emptied_in_lucca_is_found_without_reading_it(
    templates: Templates, tmp_path: Path
) -> None:
    """Lucca counts nothing left in the month: each of its committed days is found from the
    month's counts alone, without a cut or a read."""
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out")
    with HALF_YEAR.sandbox() as server:
        records = server.records
        april = [r["id"] for r in records if r["sessionEndsOn"].startswith("2024-04")]
        server.mutate(delete_ids=april)
        diff = changed(counts(records), counts(server.records))
        summary = reconcile(server, out)
        truth = by_day(server.records, HALF_YEAR.window.days())

    assert len(diff) > 20
    assert summary["changed_days"] == expected_changes(diff)
    assert summary["check_requests"] == 2 * HALF_YEAR.months
    assert summary["re_extracted"] == runs(diff)
    assert same(read_dataset(out)) == same(truth)


@pytest.mark.slow
def test_days_never_extracted_are_found_inside_the_history_and_in_a_window_given(
    tmp_path: Path,
) -> None:
    """A gap day never extracted, which Lucca then has records on, is found in the committed
    range; days after the last committed day only in a window that covers them."""
    out = tmp_path / "out"
    gap = date(2024, 3, 10)
    last = date(2024, 6, 20)  # the day after the last day extracted
    with HALF_YEAR.sandbox() as server:
        extract(server, out, DateWindow(date(2024, 1, 1), gap))
        extract(server, out, DateWindow(gap + ONE_DAY, last))
        before = tree(out)
        # A late import on the gap day (whatever Lucca had there was never extracted either).
        server.mutate(seed=3, inserts=2, from_=gap, until=gap + ONE_DAY)
        truth = by_day(server.records, HALF_YEAR.window.days())

        summary = reconcile(server, out)
        assert [change["day"] for change in summary["changed_days"]] == [gap.isoformat()]
        assert summary["changed_days"][0]["committed"] == {"records": 0, "attended": 0}
        assert summary["re_extracted"] == runs([gap.isoformat()])
        untouched_except(before, tree(out), [gap.isoformat()])

        # The default window ends at the last committed day: the days after need a window.
        window = DateWindow(date(2024, 1, 1), date(2024, 7, 1))
        later = {
            day: rows for day, rows in truth.items() if rows and date.fromisoformat(day) >= last
        }
        assert later
        summary = reconcile(server, out, ReconcileRequest(window=window))

    assert [change["day"] for change in summary["changed_days"]] == sorted(later)
    assert summary["re_extracted"] == runs(later)
    got = read_dataset(out)
    assert same(got) == same({day: truth[day] for day in got})
    assert {day for day, rows in truth.items() if rows} <= set(got)


# --------------------------------------------------------------------------- filters


def owners(records: list[dict[str, Any]], how_many: int) -> tuple[int, ...]:
    """The owners with the most records (ties by id)."""
    per_owner: dict[int, int] = {}
    for record in records:
        per_owner[record["ownerId"]] = per_owner.get(record["ownerId"], 0) + 1
    ranked = sorted(per_owner, key=lambda owner: (-per_owner[owner], owner))
    return tuple(sorted(ranked[:how_many]))


@pytest.mark.slow
def test_other_filters_than_the_datasets_are_refused_before_any_request(
    templates: Templates, tmp_path: Path
) -> None:
    with HALF_YEAR.sandbox() as server:
        chosen = owners(server.records, 40)
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out", owner_ids=chosen)
    before = tree(out)
    others = [
        ReconcileRequest(),
        ReconcileRequest(owner_ids=chosen[:-1]),
        ReconcileRequest(owner_ids=chosen, has_attended=True),
        ReconcileRequest(owner_ids=chosen, training_ids=(1,)),
    ]
    with HALF_YEAR.sandbox() as server:
        for request in others:
            with pytest.raises(LuccaConfigError, match="owner_ids") as raised:
                reconcile(server, out, request)
            assert "filters" in str(raised.value)
        assert server.stats()["requests"] == 0
    assert tree(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("by", ["owner_ids", "has_attended"])
def test_the_datasets_filters_are_compared_under_them(
    templates: Templates, tmp_path: Path, by: str
) -> None:
    """Under the dataset's filters: no write when nothing changed, a change outside them is not
    one, a change inside them is found; one probe a month when has_attended fixes attendance."""
    with HALF_YEAR.sandbox() as server:
        chosen = owners(server.records, 40)
    filters: dict[str, Any] = {"owner_ids": chosen} if by == "owner_ids" else {"has_attended": True}
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out", **filters)
    before = tree(out)
    # The same owners in another order are the same filters.
    request = ReconcileRequest(
        **({"owner_ids": tuple(reversed(chosen))} if by == "owner_ids" else filters)
    )
    per_month = 2 if by == "owner_ids" else 1

    def kept(record: dict[str, Any]) -> bool:
        if by == "owner_ids":
            return record["ownerId"] in chosen
        return attended(record)

    with HALF_YEAR.sandbox() as server:
        summary = reconcile(server, out, request)
        assert tree(out) == before
        assert summary["changed_days"] == []
        assert per_month * HALF_YEAR.months <= summary["requests"]
        assert summary["requests"] <= per_month * HALF_YEAR.months + 2

        records = server.records
        inside = next(r for r in records if kept(r) and r["sessionEndsOn"] >= "2024-03-01")
        outside = next(
            r
            for r in records
            if not kept(r)
            and r["sessionEndsOn"] >= "2024-05-01"
            and (by == "owner_ids" or not attended(r))
        )
        server.mutate(flip_ids=[inside["id"]], delete_ids=[outside["id"]])
        selected = [r for r in records if kept(r)]
        diff = changed(counts(selected), counts(r for r in server.records if kept(r)))
        assert list(diff) == [inside["sessionEndsOn"]]
        summary = reconcile(server, out, request)
        truth = by_day((r for r in server.records if kept(r)), HALF_YEAR.window.days())

    assert summary["changed_days"] == expected_changes(diff)
    assert same(read_dataset(out)) == same(truth)
    untouched_except(before, tree(out), diff)


# --------------------------------------------------------------------------- old manifests


def strip_attended_count(root: Path) -> int:
    """Rewrite every manifest as written before ``attended_count`` existed."""
    stripped = 0
    for path in root.glob(f"session_end_on=*/{MANIFEST}"):
        manifest = json.loads(path.read_text())
        if manifest.pop("attended_count", None) is not None:
            stripped += 1
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    return stripped


@pytest.mark.slow
def test_manifests_without_an_attended_count_are_counted_from_their_files(
    templates: Templates, tmp_path: Path
) -> None:
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out")
    assert strip_attended_count(out) == HALF_YEAR.window.day_count
    before, stamps = tree(out), mtimes(out)
    with HALF_YEAR.sandbox() as server:
        summary = reconcile(server, out)
        assert tree(out) == before
        assert mtimes(out) == stamps
        assert summary["changed_days"] == []
        assert summary["requests"] == 2 * HALF_YEAR.months

        # A flip changes only the attended count: seen only if the files were counted.
        records = server.records
        day = days_with(records, 2, date(2024, 2, 20))
        server.mutate(flip_ids=ids_on(records, day)[:1])
        diff = changed(counts(records), counts(server.records))
        assert list(diff) == [day.isoformat()]
        summary = reconcile(server, out)
        truth = by_day(server.records, HALF_YEAR.window.days())

    assert summary["changed_days"] == expected_changes(diff)
    assert same(read_dataset(out)) == same(truth)
    after = tree(out)
    untouched_except(before, after, diff)
    rewritten = json.loads(after[f"session_end_on={day}/{MANIFEST}"])
    assert rewritten["attended_count"] == diff[day.isoformat()][1][1]


# --------------------------------------------------------------------------- bounds reading


@pytest.mark.slow
@pytest.mark.parametrize("bounds", ["exclusive", "inclusive"])
def test_a_history_without_records_on_month_edges_asks_lucca_once_how_it_reads_bounds(
    tmp_path: Path, bounds: str
) -> None:
    """No month tells the reading (every edge day is empty, so both readings count the same):
    one more request asks, on the busiest day; the check stays exact."""
    history = FOUR_MONTHS
    with history.sandbox() as server:
        edges = {
            day
            for month in range(1, 6)
            for day in (date(2024, month, 1) - ONE_DAY, date(2024, month, 1))
        }
        empty_edges = {
            "delete_ids": [
                r["id"] for r in server.records if date.fromisoformat(r["sessionEndsOn"]) in edges
            ]
        }
    out = tmp_path / "out"
    with history.sandbox(bounds) as server:
        server.configure(**empty_edges)
        extract(server, out, history.window)
        before = tree(out)
        server.reset_stats()
        summary = reconcile(server, out)
        assert tree(out) == before
        assert summary["changed_days"] == []
        assert summary["date_bounds"] == bounds
        # No month can tell how Lucca reads the bounds: two requests ask (a page of a window
        # for a day holding records now, then that day's count "after D and before D").
        assert summary["requests"] == 2 * history.months + 2

        records = server.records
        day = days_with(records, 2, date(2024, 3, 9))
        server.mutate(
            seed=1, inserts=1, from_=day, until=day + ONE_DAY, flip_ids=ids_on(records, day)[:1]
        )
        diff = changed(counts(records), counts(server.records))
        summary = reconcile(server, out)
        truth = by_day(server.records, history.window.days())

    assert summary["changed_days"] == expected_changes(diff)
    assert same(read_dataset(out)) == same(truth)


@pytest.mark.slow
def test_a_change_equal_to_the_edge_days_counts_does_not_fool_the_bounds_reading(
    templates: Templates, tmp_path: Path
) -> None:
    """Exclusive bounds; February (the first month compared) gains as many records, attended
    alike, as its two edge days hold: its new count equals the committed count of February
    with its edge days, which is what the inclusive reading would count."""
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out")
    with HALF_YEAR.sandbox("exclusive") as server:
        records = server.records
        per_day = counts(records)
        edge = [per_day.get(day, (0, 0)) for day in ("2024-01-31", "2024-03-01")]
        wanted = (edge[0][0] + edge[1][0], edge[0][1] + edge[1][1])
        assert wanted[0] > 0
        february = MutationSpec(inserts=wanted[0], start=date(2024, 2, 1), until=date(2024, 3, 1))
        # A seed whose imports hold as many attended records as the edge days.
        seed = next(
            seed
            for seed in range(500)
            if sum(
                change["hasAttended"]
                for change in apply_mutations(
                    records,
                    dataclasses.replace(february, seed=seed),
                    default_start=HALF_YEAR.config.start,
                    default_until=HALF_YEAR.window.end,
                    next_id=10**7,
                )[1]
            )
            == wanted[1]
        )
        server.mutate(**dataclasses.replace(february, seed=seed).to_dict())
        diff = changed(counts(records), counts(server.records))
        summary = reconcile(server, out)
        truth = by_day(server.records, HALF_YEAR.window.days())

    assert summary["date_bounds"] == "exclusive"
    assert summary["changed_days"] == expected_changes(diff)
    assert same(read_dataset(out)) == same(truth)


# --------------------------------------------------------------------------- 408 on wide windows


@pytest.mark.slow
@pytest.mark.parametrize("bounds", ["exclusive", "inclusive"])
def test_months_lucca_times_out_on_are_counted_by_halves_and_stay_exact(
    templates: Templates, tmp_path: Path, bounds: str
) -> None:
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out")
    before = tree(out)
    limit = 10
    with HALF_YEAR.sandbox(bounds) as server:
        records = server.records
        day = days_with(records, 1, date(2024, 3, 17))
        server.mutate(seed=2, inserts=1, from_=day, until=day + ONE_DAY)
        diff = changed(counts(records), counts(server.records))
        server.configure(timeout_window_days=limit)
        summary = reconcile(server, out, retry=FAST_RETRY)
        made = requests_made(server)
        truth = by_day(server.records, HALF_YEAR.window.days())

    assert summary["changed_days"] == expected_changes(diff)
    assert summary["date_bounds"] == bounds
    assert same(read_dataset(out)) == same(truth)
    untouched_except(before, tree(out), diff)
    # Month-wide probes were refused; only windows within the limit were answered.
    refused = [r for r in made if r["status"] == 408]
    answered = [r for r in made if r["status"] == 200]
    assert max(r["width"] for r in refused if is_count_probe(r)) >= 28  # a month
    assert all(r["width"] > limit for r in refused)
    assert all(r["width"] is not None and r["width"] <= limit for r in answered)
    assert sum(is_count_probe(r) for r in answered) >= 4 * HALF_YEAR.months


# --------------------------------------------------------------------------- the operator


def make_context(run_id: str = "manual__reconcile") -> dict[str, Any]:
    return {"run_id": run_id, "params": {}}


@pytest.mark.slow
def test_the_operator_reconciles_the_whole_dataset_and_returns_its_summary(
    templates: Templates, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = templates.copy(HALF_YEAR, "jsonl", tmp_path / "out")
    before = tree(out)
    with HALF_YEAR.sandbox() as server:
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(server.url))
        records = server.records
        day = days_with(records, 2, date(2024, 5, 5))
        server.mutate(delete_ids=ids_on(records, day)[:1])
        diff = changed(counts(records), counts(server.records))

        operator = RealizedTrainingsReconcileOperator(
            task_id="reconcile", output_path=f"file://{out}"
        )
        summary = operator.execute(make_context())
        truth = by_day(server.records, HALF_YEAR.window.days())

        # A window given: only its days are compared (nothing changed in it).
        operator = RealizedTrainingsReconcileOperator(
            task_id="reconcile_june",
            output_path=f"file://{out}",
            session_end_from="2024-06-01",
            session_end_until="2024-07-01",
        )
        server.reset_stats()
        june = operator.execute(make_context("manual__june"))
        # One month is at both ends of the window: no month inside it can tell how Lucca reads
        # the bounds, so two more requests ask.
        assert server.stats()["requests"] == 2 + 2

    json.dumps(summary)  # an XCom
    assert summary["window"] == {"from": "2024-01-01", "until": "2024-07-01"}
    assert summary["changed_days"] == expected_changes(diff)
    assert same(read_dataset(out)) == same(truth)
    after = tree(out)
    untouched_except(before, after, diff)
    manifest = json.loads(after[f"session_end_on={day}/{MANIFEST}"])
    assert manifest["run"]["run_id"] == "manual__reconcile"
    assert june["window"] == {"from": "2024-06-01", "until": "2024-07-01"}
    assert june["months"] == 1
    assert june["changed_days"] == []


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"lookback_days": 3}, "lookback_days"),
        ({"session_end_from": "2024-02-30", "session_end_until": "2024-03-01"}, "session_end_from"),
        ({"session_end_from": "2024-02-01"}, "session_end_until"),
        ({"session_end_from": "2024-03-01", "session_end_until": "2024-02-01"}, "before"),
    ],
)
def test_the_operator_refuses_bad_parameters_when_the_dag_is_parsed(
    tmp_path: Path, params: dict[str, Any], match: str
) -> None:
    with pytest.raises(LuccaConfigError, match=match):
        RealizedTrainingsReconcileOperator(
            task_id="reconcile", output_path=f"file://{tmp_path}", **params
        )
