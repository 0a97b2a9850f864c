"""A three-year history load against a Lucca that answers 408 to heavy requests.

Lucca aborts a request running over 5 s with 408 and asks for "a simpler request": a history
load of years keeps getting it. The sandbox's 408 option refuses windows wider than N days (or
matching more than M records), as Lucca would; the load must split its window until Lucca
answers, commit every record exactly once, and show the splits in the requests it made. A day
that still times out alone cannot be split: the load fails with a typed error and commits
nothing.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import LuccaRetriesExhaustedError, RetryPolicy
from airflow_provider_lucca.client.defaults import TIMEOUTS_BEFORE_SPLIT
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, client_for, read_dataset, tree

LOG = logging.getLogger("tests.history_408")
#: Enough attempts for the timeouts before a split, with millisecond waits.
RETRY = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.002, jitter=0.0)
HISTORY = DateWindow(date(2023, 1, 1), date(2026, 1, 1))
CONFIG = SandboxConfig(records=3000, start=HISTORY.start, end=HISTORY.end - timedelta(days=1))


def load(server: SandboxServer, out: Path, window: DateWindow) -> ExtractionSummary:
    with client_for(server.url, api_key=SANDBOX_KEY, retry=RETRY) as client:
        return extract_realized_trainings(
            client, ExtractionRequest(window=window), ObjectStoragePath(out.as_uri()), log=LOG
        )


def truth(server: SandboxServer, window: DateWindow) -> dict[str, list[dict[str, Any]]]:
    by_day: dict[str, list[dict[str, Any]]] = {day.isoformat(): [] for day in window.days()}
    for record in server.records:
        if record["sessionEndsOn"] in by_day:
            by_day[record["sessionEndsOn"]].append(record)
    return {day: sorted(rows, key=lambda r: r["id"]) for day, rows in by_day.items()}


def requests_made(server: SandboxServer) -> list[dict[str, Any]]:
    """Each API request: its window (after, before), width in days, status, whether a count
    probe (``limit=0``) or a page, and its cursor."""
    made = []
    for entry in server.request_log()["requests"]:
        query = {key: values[0] for key, values in parse_qs(entry["query"]).items()}
        after, before = query["sessionEndOnAfter"], query["sessionEndOnBefore"]
        made.append(
            {
                "window": (after, before),
                "width": (date.fromisoformat(before) - date.fromisoformat(after)).days,
                "status": entry["status"],
                "probe": query.get("limit") == "0",
                "page": query.get("page"),
            }
        )
    return made


@pytest.mark.slow
@pytest.mark.parametrize(
    "option",
    [{"timeout_window_days": 90}, {"timeout_records": 250}],
    ids=["wider-than-90-days", "more-than-250-records"],
)
def test_a_three_year_load_splits_its_window_until_lucca_answers_and_stays_exact(
    tmp_path: Path, option: dict[str, int]
) -> None:
    with SandboxServer(CONFIG) as server:
        server.configure(**option)
        summary = load(server, tmp_path, HISTORY)
        made = requests_made(server)
        want = truth(server, HISTORY)

    got = read_dataset(tmp_path)
    assert got == want
    ids = [record["id"] for rows in got.values() for record in rows]
    assert len(ids) == len(set(ids)) == CONFIG.records  # each record once
    assert summary["records"] == CONFIG.records
    assert summary["duplicates_dropped"] == 0
    assert summary["slices"] > 1
    assert summary["reads"] == 1

    # The whole window was asked first, and refused after the timeouts that allow a split.
    whole = ((HISTORY.start - timedelta(days=1)).isoformat(), HISTORY.end.isoformat())
    assert [r["window"] for r in made[:TIMEOUTS_BEFORE_SPLIT]] == [whole] * TIMEOUTS_BEFORE_SPLIT
    assert all(r["status"] == 408 for r in made[:TIMEOUTS_BEFORE_SPLIT])
    assert made[TIMEOUTS_BEFORE_SPLIT]["width"] < made[0]["width"]  # then a narrower one
    # No window was answered that Lucca would refuse; every refused one was cut in halves
    # (its first half asked next) rather than retried beyond the timeouts allowed.
    answered = [r for r in made if r["status"] == 200]
    refused = [r for r in made if r["status"] == 408]
    assert refused
    assert {r["status"] for r in made} == {200, 408}
    if "timeout_window_days" in option:
        assert max(r["width"] for r in answered) <= option["timeout_window_days"]
        assert all(r["width"] > option["timeout_window_days"] for r in refused)
    else:
        per_window = Counter(
            record["sessionEndsOn"] for record in server.records
        )  # the records a window matches, under the sandbox's exclusive bounds
        for request in answered:
            after, before = request["window"]
            inside = sum(n for day, n in per_window.items() if after < day < before)
            assert inside <= option["timeout_records"], request
    assert all(
        count <= TIMEOUTS_BEFORE_SPLIT
        for count in Counter(r["window"] for r in refused if r["page"] is None).values()
    )
    # The slices read cover the history without a gap nor an overlap, in order.
    first_pages = [r["window"] for r in answered if not r["probe"] and r["page"] is None]
    assert len(first_pages) == summary["slices"]
    assert first_pages[0][0] == whole[0]
    assert first_pages[-1][1] == whole[1]
    for (_, end), (after, _) in pairwise(first_pages):
        # Each slice is asked from the day before its first day: the previous slice's end.
        assert date.fromisoformat(after) + timedelta(days=1) == date.fromisoformat(end)
    # Each slice was counted once more at the end (a record moving across a seam would show).
    probes = [r["window"] for r in answered if r["probe"]]
    assert probes == first_pages


@pytest.mark.parametrize(
    "option",
    [{"timeout_window_days": 1}, {"timeout_records": 0}],
    ids=["one-day-too-wide", "one-day-too-many-records"],
)
def test_a_day_that_still_times_out_alone_fails_the_load_and_commits_nothing(
    tmp_path: Path, option: dict[str, int]
) -> None:
    """One day is asked as a two-day-wide window (the day before, the day after): wider than
    one day, refused; any record is more than none. The load splits down to a day with a
    record, retries it like any timeout, then fails; the dataset committed before is intact."""
    with SandboxServer(CONFIG) as server:
        # Sixteen days from a day with records: each first half holds it, down to that day.
        ends = {record["sessionEndsOn"] for record in server.records}
        first = min(day for day in ends if day >= "2024-03-01")
        window = DateWindow(date.fromisoformat(first), date.fromisoformat(first) + timedelta(16))
        load(server, tmp_path, window)
        before = tree(tmp_path)
        server.configure(**option)
        server.reset_stats()
        with pytest.raises(LuccaRetriesExhaustedError, match="408"):
            load(server, tmp_path, window)
        made = requests_made(server)

    assert tree(tmp_path) == before  # nothing written, the lock released
    assert all(r["status"] == 408 for r in made)
    last_day = made[-1]
    assert last_day["width"] == 2  # one day
    assert last_day["window"][0] == (window.start - timedelta(days=1)).isoformat()
    assert made[-RETRY.max_attempts :] == [last_day] * RETRY.max_attempts
    # Halves of halves down to that day: 16 days, 8, 4, 2, then one.
    assert [r["width"] - 1 for r in made[: -RETRY.max_attempts : TIMEOUTS_BEFORE_SPLIT]] == [
        16,
        8,
        4,
        2,
    ]
