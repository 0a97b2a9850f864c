"""Property: for random histories and random mutations of old history, a reconciliation rewrites
only days whose counts changed, leaves them equal to Lucca, and stays within its request budget.

A history is a window of 12 to 36 months, starting and ending on any day, over one of two
three-year datasets (about 2.7 records a day, or one a week: months read whole or cut in
halves, edge days full or empty), read under either bounds reading. Mutations are the sandbox's
own: late imports at any date of the window (spread out or piled on a few days), deletions and
attendance flips, 0 to 6 of each.

What counts cannot see is a limit, not a failure: changes that cancel out in a window's counts
(an import and a deletion of attended records on the same day, or in the same half-month the
drill-down does not look into) leave those days as they were. So the properties are:

- only days whose (records, attended) counts changed are re-extracted, one extraction per run of
  consecutive days, and every other file is untouched (not rewritten);
- each re-extracted day equals Lucca's records;
- when no combination of the changes can cancel out (the days' count changes lie in an open
  half-plane), every changed day is found, and the dataset equals Lucca's everywhere;
- Lucca's bounds reading is learnt right;
- the check costs at most 2 requests a month, 1 more if the months' counts could not tell how
  Lucca reads its bounds, and a bounded drill-down per changed day; each re-extraction its pages.

Extracting three years through the commit protocol takes seconds: each dataset is extracted once,
and the days an example rewrites are put back from a pristine copy after it.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath
from hypothesis import HealthCheck, Phase, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.reconcile import (
    ReconcileRequest,
    reconcile_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, client_for, read_dataset

LOG = logging.getLogger("tests.reconcile_property")
ONE_DAY = timedelta(days=1)
PAGE = 100
#: Requests one changed day may add to the check: one count of a first half (2 requests) per cut,
#: at most ceil(log2(33)) cuts from a month with its two edge days down to a day, or a read of a
#: window holding at most a page (its request also covers two edge days: 2 pages at most).
PER_CHANGED_DAY = 2 * math.ceil(math.log2(33)) + 2
#: Three years of records, dense or sparse (a record a week); other seeds, other days, owners
#: and attendance.
DATASETS = {
    "dense": SandboxConfig(seed=101, records=3000, start=date(2023, 1, 1), end=date(2025, 12, 31)),
    "sparse": SandboxConfig(seed=202, records=150, start=date(2023, 1, 1), end=date(2025, 12, 31)),
}

Counts = tuple[int, int]


# --------------------------------------------------------------------------- datasets


@dataclass
class Lake:
    """A dataset extracted once (``pristine``) and the copy the examples reconcile (``work``)."""

    pristine: Path
    work: Path
    dirty: bool = False

    def restore(self, days: Iterable[str]) -> None:
        for day in days:
            name = f"session_end_on={day}"
            shutil.rmtree(self.work / name, ignore_errors=True)
            if (self.pristine / name).exists():
                shutil.copytree(self.pristine / name, self.work / name)

    def reset(self) -> None:
        shutil.rmtree(self.work)
        shutil.copytree(self.pristine, self.work)
        self.dirty = False


@dataclass
class Lakes:
    base: Path
    built: dict[str, Lake] = field(default_factory=dict)

    def get(self, name: str) -> Lake:
        if name not in self.built:
            config = DATASETS[name]
            pristine = self.base / f"{name}-pristine"
            window = DateWindow(config.start, config.end + ONE_DAY)
            with SandboxServer(config) as server, client_for(server.url, api_key=SANDBOX_KEY) as c:
                extract_realized_trainings(
                    c,
                    ExtractionRequest(window=window),
                    ObjectStoragePath(pristine.as_uri()),
                    log=LOG,
                )
                # What the examples start from is Lucca's truth: a day an example leaves alone
                # stays equal to it unless its own changes cancelled out.
                assert read_dataset(pristine) == truth_of(
                    server.records, [day.isoformat() for day in window.days()]
                )
            lake = Lake(pristine, self.base / f"{name}-work")
            shutil.copytree(pristine, lake.work)
            self.built[name] = lake
        lake = self.built[name]
        if lake.dirty:
            lake.reset()
        return lake


@pytest.fixture(scope="module")
def lakes(tmp_path_factory: pytest.TempPathFactory) -> Lakes:
    return Lakes(tmp_path_factory.mktemp("reconcile-property"))


# --------------------------------------------------------------------------- examples


@dataclass(frozen=True)
class Example:
    dataset: str
    window: DateWindow
    bounds: str
    seed: int
    inserts: int
    insert_range: tuple[date, date]
    deletions: int
    flips: int


@st.composite
def examples(draw: st.DrawFn) -> Example:
    dataset = draw(st.sampled_from(sorted(DATASETS)))
    config = DATASETS[dataset]
    total = (config.end - config.start).days + 1
    span = draw(st.integers(min_value=365, max_value=total))
    offset = draw(st.integers(min_value=0, max_value=total - span))
    window = DateWindow(config.start + timedelta(offset), config.start + timedelta(offset + span))
    # Imports over the whole window, or piled on a few days of it.
    width = draw(st.sampled_from([1, 3, 30, span]))
    first = draw(st.integers(min_value=0, max_value=span - width))
    insert_from = window.start + timedelta(first)
    # Every kind of change, or one kind alone (changes that cannot cancel out more often).
    kinds = draw(st.sampled_from(["all", "inserts", "deletions", "flips"]))
    counts = {
        kind: draw(st.integers(min_value=0, max_value=6)) if kinds in ("all", kind) else 0
        for kind in ("inserts", "deletions", "flips")
    }
    return Example(
        dataset=dataset,
        window=window,
        bounds=draw(st.sampled_from(["exclusive", "inclusive"])),
        seed=draw(st.integers(min_value=0, max_value=2**16)),
        insert_range=(insert_from, insert_from + timedelta(width)),
        **counts,
    )


# --------------------------------------------------------------------------- oracles


def day_counts(records: Iterable[dict[str, Any]], window: DateWindow) -> dict[str, Counts]:
    """(records, attended) of each day of ``window`` that has records."""
    first, until = window.start.isoformat(), window.end.isoformat()
    result: dict[str, Counts] = {}
    for record in records:
        day = record["sessionEndsOn"]
        if first <= day < until:
            total, done = result.get(day, (0, 0))
            result[day] = (total + 1, done + (record.get("hasAttended", True) is True))
    return result


def months(window: DateWindow) -> Iterator[DateWindow]:
    start = window.start
    while start < window.end:
        following = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        yield DateWindow(start, min(following, window.end))
        start = min(following, window.end)


def runs(days: Iterable[str]) -> list[dict[str, str]]:
    result: list[dict[str, str]] = []
    for day in sorted(date.fromisoformat(d) for d in days):
        if result and result[-1]["until"] == day.isoformat():
            result[-1]["until"] = (day + ONE_DAY).isoformat()
        else:
            result.append({"from": day.isoformat(), "until": (day + ONE_DAY).isoformat()})
    return result


def total(counts: Iterable[Counts]) -> Counts:
    records = attended = 0
    for day_records, day_attended in counts:
        records, attended = records + day_records, attended + day_attended
    return records, attended


def difference(a: Counts, b: Counts) -> Counts:
    return a[0] - b[0], a[1] - b[1]


def day_of(path: str) -> str:
    """The day of a file under ``session_end_on=<day>/`` ("" for a file at the root)."""
    head = path.split("/", 1)[0]
    return head.removeprefix("session_end_on=") if "/" in path else ""


def cross(a: Counts, b: Counts) -> int:
    return a[0] * b[1] - a[1] * b[0]


def may_cancel(vectors: list[Counts]) -> bool:
    """Whether some positive combination of the (nonzero) vectors is zero, i.e. zero is in their
    convex hull (Gordan): then a window holding those days can count the same as before. In the
    plane, zero is in the hull of two or three of them (Caratheodory)."""
    for a, b in itertools.combinations(vectors, 2):
        if cross(a, b) == 0 and a[0] * b[0] + a[1] * b[1] < 0:
            return True
    for a, b, c in itertools.combinations(vectors, 3):
        sides = [cross(a, b), cross(b, c), cross(c, a)]
        if all(s > 0 for s in sides) or all(s < 0 for s in sides):
            return True
    return False


def stats(root: Path) -> dict[str, tuple[int, int, int]]:
    """Each file's (inode, mtime, size): a rewrite, even with the same bytes, changes them."""
    found: dict[str, tuple[int, int, int]] = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            info = os.stat(path)
            found[os.path.relpath(path, root)] = (info.st_ino, info.st_mtime_ns, info.st_size)
    return found


def read_days(root: Path, days: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """:func:`read_dataset` over some days only (a directory of links to their partitions)."""
    with tempfile.TemporaryDirectory() as view:
        for day in days:
            name = f"session_end_on={day}"
            (Path(view) / name).symlink_to(root / name, target_is_directory=True)
        return read_dataset(Path(view))


def truth_of(records: list[dict[str, Any]], days: Iterable[str]) -> dict[str, list[Any]]:
    result: dict[str, list[dict[str, Any]]] = {day: [] for day in days}
    for record in records:
        if record["sessionEndsOn"] in result:
            result[record["sessionEndsOn"]].append(record)
    return {day: sorted(rows, key=lambda r: r["id"]) for day, rows in result.items()}


# --------------------------------------------------------------------------- the property


@pytest.mark.slow
@settings(
    max_examples=14,
    deadline=None,
    # Each example reconciles 1 to 3 years over HTTP: shrinking a failure would take minutes.
    # The failing example is printed whole instead.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(example=examples())
def test_reconcile_rewrites_only_changed_days_exactly_within_its_budget(
    lakes: Lakes, example: Example
) -> None:
    check(lakes, example)


#: Found by the property: inclusive bounds, September 2024 loses an attended record (09-15)
#: while its edge days hold one attended record (10-01): Lucca's count of 08-31..10-01 read
#: inclusively equals September's committed count, which is what the exclusive reading would
#: count. Learnt from that month alone, the exclusive reading hid 09-15, 2025-03-30 and
#: 2025-05-25 (deleted).
BOUNDS_FOOLED = Example(
    dataset="sparse",
    window=DateWindow(date(2024, 7, 3), date(2025, 7, 3)),
    bounds="inclusive",
    seed=1,
    inserts=0,
    insert_range=(date(2024, 7, 3), date(2024, 7, 4)),
    deletions=4,
    flips=1,
)


@pytest.mark.slow
def test_a_deletion_equal_to_the_edge_days_counts_does_not_fool_the_bounds_reading(
    lakes: Lakes,
) -> None:
    check(lakes, BOUNDS_FOOLED)


def note(value: str) -> None:
    """A statistic of the property's examples (``--hypothesis-show-statistics``)."""
    if currently_in_test_context():
        event(value)


def check(lakes: Lakes, example: Example) -> None:
    """Mutate, reconcile, and check every property for one example."""
    lake = lakes.get(example.dataset)
    window = example.window
    config = SandboxConfig(**{**vars(DATASETS[example.dataset]), "bounds": example.bounds})
    found: list[str] = []
    lake.dirty = True  # until the example ends well
    with SandboxServer(config) as server:
        before_records = server.records
        before = day_counts(before_records, window)
        changes = server.mutate(
            seed=example.seed,
            inserts=example.inserts,
            from_=example.insert_range[0],
            until=example.insert_range[1],
        )
        candidates = sum(count for count, _ in before.values())
        changes += server.mutate(
            seed=example.seed + 1,
            deletions=min(example.deletions, candidates),
            flips=min(example.flips, max(candidates - example.deletions, 0)),
            from_=window.start,
            until=window.end,
        )
        after_records = server.records
        after = day_counts(after_records, window)
        snapshot = stats(lake.work)
        request = ReconcileRequest(
            window=None if window == DateWindow(config.start, config.end + ONE_DAY) else window
        )
        with client_for(server.url, api_key=SANDBOX_KEY) as client:
            summary = reconcile_realized_trainings(
                client, request, ObjectStoragePath(lake.work.as_uri()), log=LOG
            )
        made = len(server.request_log()["requests"])

    assert summary["date_bounds"] == example.bounds
    mutated = {change["sessionEndsOn"] for change in changes}
    changed = {d for d in set(before) | set(after) if before.get(d, (0, 0)) != after.get(d, (0, 0))}
    found = [change["day"] for change in summary["changed_days"]]

    # Only days whose counts changed, each with what was committed and what Lucca counts.
    assert set(found) <= changed <= mutated
    for change in summary["changed_days"]:
        day = change["day"]
        assert (change["committed"]["records"], change["committed"]["attended"]) == before.get(
            day, (0, 0)
        )
        assert (change["lucca"]["records"], change["lucca"]["attended"]) == after.get(day, (0, 0))
        assert change["records_now"] == after.get(day, (0, 0))[0]
    # One extraction per run of consecutive days; nothing else rewritten, no lock left.
    assert summary["re_extracted"] == runs(found)
    now = stats(lake.work)
    assert {p: s for p, s in now.items() if day_of(p) not in found} == {
        p: s for p, s in snapshot.items() if day_of(p) not in found
    }
    # The days rewritten are Lucca's records.
    assert read_days(lake.work, found) == truth_of(after_records, found)
    # Nothing can cancel out: every changed day is found.
    vectors = [difference(after.get(d, (0, 0)), before.get(d, (0, 0))) for d in changed]
    if not may_cancel(vectors):
        note("changes cannot cancel out: every changed day must be found")
        assert set(found) == changed
        if changed == mutated:  # no day's own changes cancelled out
            note("the whole dataset must equal Lucca's")  # the other days were not mutated
    note(f"{len(changed) - len(found)} changed days cancelled out unseen")
    # The budget.
    n_months = len(list(months(window)))
    assert summary["months"] == n_months
    assert summary["requests"] == made
    assert summary["check_requests"] <= 2 * n_months + 2 + PER_CHANGED_DAY * len(found)
    pages = 0
    for run in summary["re_extracted"]:
        start, until = date.fromisoformat(run["from"]), date.fromisoformat(run["until"])
        inside = day_counts(after_records, DateWindow(start - ONE_DAY, until + ONE_DAY))
        pages += max(1, math.ceil(sum(n for n, _ in inside.values()) / PAGE))
    assert summary["requests"] - summary["check_requests"] <= pages

    lake.restore(found)
    lake.dirty = False
