"""Seeded mutations of the sandbox's old history: late CSV imports, deletions, attendance flips.

Reconciliation (count probes, drill-down) is proven against these mutations, so they must do
exactly what they report, the report must name every mutated day, the same seed on the same
dataset must replay the same mutations, and a refused request must change nothing. Everything
is checked through the API a client reads (cursored listings before and after), not only the
sandbox's own view.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from lucca_sandbox import (
    API_PATH,
    TRAINING_CATALOGUE,
    MutationSpec,
    SandboxConfig,
    SandboxServer,
)
from lucca_sandbox.__main__ import build_parser, main
from lucca_sandbox.process import SandboxProcess
from tests.helpers import RECORD_FIELDS, SANDBOX_KEY

RECORDS = 300
#: Keys a generated record may carry (CSV imports omit the demand and session ids, or null them).
RECORD_KEYS = set(RECORD_FIELDS)
CATALOGUE = {
    training.id: {
        "id": training.id,
        "title": training.title,
        "categoryId": training.category_id,
        "providerUrl": training.provider_url,
        "level": training.level,
    }
    for training in TRAINING_CATALOGUE
}


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"lucca application={SANDBOX_KEY}"
        yield session


@pytest.fixture
def server() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(records=RECORDS)) as running:
        yield running


def admin_headers(server: SandboxServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


def listing(url: str, http: requests.Session, **filters: str) -> dict[int, dict[str, Any]]:
    """Every record the API serves for ``filters``, following the cursors, by id."""
    params: dict[str, Any] = {"limit": 100, "fields.root": "next", **filters}
    found: dict[int, dict[str, Any]] = {}
    while True:
        response = http.get(url + API_PATH, params=params, timeout=10)
        assert response.status_code == 200, response.text
        page = response.json()
        for item in page["items"]:
            assert item["id"] not in found
            found[item["id"]] = item
        if page["next"] is None:
            return found
        params = {**params, "page": page["next"]}


def count(url: str, http: requests.Session, **filters: str) -> int:
    params = {"fields.root": "count", "limit": 0, **filters}
    response = http.get(url + API_PATH, params=params, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["count"])


def mutate_over_http(server: SandboxServer, body: object) -> requests.Response:
    return requests.post(
        server.url + "/_sandbox/mutate", json=body, headers=admin_headers(server), timeout=10
    )


def change(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": record["id"],
        "sessionEndsOn": record["sessionEndsOn"],
        "hasAttended": record["hasAttended"],
    }


# --------------------------------------------------------------------------- determinism


def test_the_same_seed_on_the_same_dataset_replays_the_same_mutations() -> None:
    body = {"seed": 7, "inserts": 5, "deletions": 3, "flips": 4}
    answers = []
    datasets = []
    for _ in range(2):
        with SandboxServer(SandboxConfig(records=RECORDS)) as server:
            response = mutate_over_http(server, body)
            assert response.status_code == 200, response.text
            answers.append(response.json()["changes"])
            datasets.append(server.records)
    assert answers[0] == answers[1]
    assert datasets[0] == datasets[1]
    assert Counter(c["kind"] for c in answers[0]) == {"insert": 5, "delete": 3, "flip": 4}
    with SandboxServer(SandboxConfig(records=RECORDS)) as server:
        assert server.mutate(**{**body, "seed": 8}) != answers[0]


# --------------------------------------------------------------------------- each kind


def test_deletions_remove_exactly_the_records_they_report(
    server: SandboxServer, http: requests.Session
) -> None:
    before = listing(server.url, http)
    changes = server.mutate(seed=3, deletions=4)
    after = listing(server.url, http)
    assert [c["kind"] for c in changes] == ["delete"] * 4
    deleted = {c["id"] for c in changes}
    assert after == {i: r for i, r in before.items() if i not in deleted}
    assert changes == [change("delete", before[i]) for i in sorted(deleted)]
    # The reported days are the days whose counts dropped.
    for day, lost in Counter(c["sessionEndsOn"] for c in changes).items():
        days = {"sessionEndOnAfter": day, "sessionEndOnBefore": day}
        server.configure(bounds="inclusive")
        assert (
            count(server.url, http, **days)
            == sum(r["sessionEndsOn"] == day for r in before.values()) - lost
        )
        server.configure(bounds="exclusive")


def test_flips_invert_has_attended_of_exactly_the_records_they_report(
    server: SandboxServer, http: requests.Session
) -> None:
    before = listing(server.url, http)
    attended_before = count(server.url, http, hasAttended="true")
    changes = server.mutate(seed=5, flips=6)
    after = listing(server.url, http)
    assert [c["kind"] for c in changes] == ["flip"] * 6
    flipped = {c["id"] for c in changes}
    assert after.keys() == before.keys()
    for record_id, record in after.items():
        if record_id in flipped:
            assert record == {
                **before[record_id],
                "hasAttended": not before[record_id]["hasAttended"],
            }
        else:
            assert record == before[record_id]
    assert changes == [change("flip", after[i]) for i in sorted(flipped)]
    gained = sum(1 if c["hasAttended"] else -1 for c in changes)
    assert count(server.url, http, hasAttended="true") == attended_before + gained
    assert count(server.url, http) == len(before)


def test_a_flip_back_restores_the_record(server: SandboxServer, http: requests.Session) -> None:
    before = listing(server.url, http)
    target = next(r for r in before.values() if r["hasAttended"])
    first = server.mutate(flip_ids=[target["id"]])
    assert first == [{**change("flip", target), "hasAttended": False}]
    assert listing(server.url, http, hasAttended="false")[target["id"]]["hasAttended"] is False
    assert server.mutate(flip_ids=[target["id"]]) == [change("flip", target)]
    assert listing(server.url, http) == before


def test_inserts_are_late_imports_shaped_like_generated_records(
    server: SandboxServer, http: requests.Session
) -> None:
    before = listing(server.url, http)
    changes = server.mutate(seed=11, inserts=120, **{"from": "2023-01-01", "until": "2023-07-01"})
    after = listing(server.url, http)
    assert [c["kind"] for c in changes] == ["insert"] * 120
    inserted = {c["id"]: c for c in changes}
    assert {i: r for i, r in after.items() if i not in inserted} == before
    assert min(inserted) > max(before)  # new ids above every existing one
    owners = {r["ownerId"] for r in before.values()}
    for record_id, reported in inserted.items():
        record = after[record_id]
        assert reported == change("insert", record)
        assert set(record) <= RECORD_KEYS
        assert record.get("trainingDemandId") is None
        assert record.get("sessionId") is None
        assert record["training"] == CATALOGUE[record["training"]["id"]]
        assert record["ownerId"] in owners
        assert "2023-01-01" <= record["sessionEndsOn"] < "2023-07-01"
        assert record["sessionStartsOn"] <= record["sessionEndsOn"]
        assert isinstance(record["hasAttended"], bool)
        duration = record["durationInHours"]
        assert duration > 0
        assert round(duration * 100) == pytest.approx(duration * 100)
    # Like generated data: some imports are not attended, some carry null ids, some none.
    assert {r["hasAttended"] for r in (after[i] for i in inserted)} == {True, False}
    assert {"trainingDemandId" in after[i] for i in inserted} == {True, False}
    # A late import is served by a window on its (past) day.
    day = changes[0]["sessionEndsOn"]
    server.configure(bounds="inclusive")
    window = listing(server.url, http, sessionEndOnAfter=day, sessionEndOnBefore=day)
    assert changes[0]["id"] in window


def test_counts_draw_within_from_until_and_default_to_the_dataset() -> None:
    config = SandboxConfig(records=RECORDS, start=date(2024, 1, 1), end=date(2024, 12, 31))
    with SandboxServer(config) as server:
        changes = server.mutate(
            seed=2, inserts=10, deletions=10, flips=10, from_="2024-03-01", until="2024-04-01"
        )
        assert len(changes) == 30
        assert {c["sessionEndsOn"][:7] for c in changes} == {"2024-03"}
        # Omitted bounds are the dataset's start and the day after its end (its end included).
        last_day = server.mutate(seed=3, inserts=5, **{"from": "2024-12-31"})
        assert {c["sessionEndsOn"] for c in last_day} == {"2024-12-31"}
        first_day = server.mutate(seed=3, inserts=5, until=date(2024, 1, 2))
        assert {c["sessionEndsOn"] for c in first_day} == {"2024-01-01"}
        # Explicit bounds reach past the dataset: a late import of an older year.
        older = server.mutate(seed=3, inserts=5, from_="2021-01-01", until="2021-01-08")
        assert all("2021-01-01" <= c["sessionEndsOn"] < "2021-01-08" for c in older)
        assert server.mutate(until=date(2024, 1, 2), **{"from": date(2024, 1, 1)}) == []


def test_explicit_ids_and_counts_together(server: SandboxServer, http: requests.Session) -> None:
    before = listing(server.url, http)
    first, second, *_ = sorted(before)
    changes = server.mutate(seed=9, delete_ids=[second], flip_ids=[first], deletions=2, flips=1)
    kinds = Counter(c["kind"] for c in changes)
    assert kinds == {"delete": 3, "flip": 2}
    assert second in {c["id"] for c in changes if c["kind"] == "delete"}
    assert first in {c["id"] for c in changes if c["kind"] == "flip"}
    assert len({c["id"] for c in changes}) == 5  # a drawn record is never an explicit one
    after = listing(server.url, http)
    assert len(after) == len(before) - 3
    assert after[first]["hasAttended"] is not before[first]["hasAttended"]


def test_imports_never_reuse_a_deleted_id(server: SandboxServer) -> None:
    top = server.records[-1]["id"]
    assert server.mutate(delete_ids=[top])[0]["id"] == top
    inserted = server.mutate(seed=1, inserts=1)
    assert inserted[0]["id"] > top


def test_a_mutation_replaces_the_data_like_configure(
    server: SandboxServer, http: requests.Session
) -> None:
    """The list a handler already holds stays as it was; the next requests see the change."""
    snapshot = server.records
    copy = json.loads(json.dumps(snapshot))
    params = {"fields.root": "count", "limit": 0}
    assert count(server.url, http, **params) == RECORDS  # cached for these filters
    changes = server.mutate(seed=6, deletions=5, flips=5, inserts=2)
    assert server.records is not snapshot
    assert snapshot == copy  # not mutated in place (flipped records are copies too)
    assert count(server.url, http, **params) == RECORDS - 5 + 2  # the cache was cleared
    assert server.stats()["records"] == RECORDS - 3
    assert len(changes) == 12


def test_mutate_over_http_answers_what_changed(
    server: SandboxServer, http: requests.Session
) -> None:
    before = listing(server.url, http)
    response = mutate_over_http(
        server, {"seed": 7, "inserts": 2, "deletions": 2, "flips": 2, "from": "2025-06-01"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    changes = response.json()["changes"]
    after = listing(server.url, http)
    for item in changes:
        assert set(item) == {"kind", "id", "sessionEndsOn", "hasAttended"}
        assert item["sessionEndsOn"] >= "2025-06-01"
        if item["kind"] == "delete":
            assert item["id"] in before
            assert item["id"] not in after
        else:
            assert item == change(item["kind"], after[item["id"]])
    assert server.request_log()["requests"][-1]["path"] == API_PATH  # admin calls not logged


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"inserts": -1}, "inserts"),
        ({"inserts": "5"}, "inserts"),
        ({"deletions": True}, "deletions"),
        ({"flips": 1.5}, "flips"),
        ({"seed": "seven", "flips": 1}, "seed"),
        ({"from": "2025-02-30", "flips": 1}, "from"),
        ({"until": "tomorrow", "flips": 1}, "until"),
        ({"from": "2025-03-01", "until": "2025-03-01", "inserts": 1}, "until"),
        ({"from": "2026-01-01", "inserts": 1}, "empty"),
        ({"delete_ids": [10**9]}, "delete_ids"),
        ({"flip_ids": [0]}, "flip_ids"),
        ({"delete_ids": "1,2"}, "delete_ids"),
        ({"flip_ids": [3, 3]}, "twice"),
        ({"deletions": RECORDS + 1}, "deletions"),
        ({"deletions": RECORDS, "flips": 1}, "flips=1, but only 0 records"),
        ({"inserts": 10**9}, "inserts"),
        ({"insert": 3}, "insert"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_bodies_are_refused_and_change_nothing(
    server: SandboxServer, http: requests.Session, body: Any, named: str
) -> None:
    before = server.records
    response = mutate_over_http(server, body)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert named in response.json()["detail"]
    assert server.records is before
    assert count(server.url, http) == RECORDS
    if isinstance(body, dict):
        with pytest.raises(ValueError, match=named):
            server.mutate(**body)
        assert server.records is before


def test_a_record_both_deleted_and_flipped_is_refused(server: SandboxServer) -> None:
    record_id = server.records[0]["id"]
    before = server.records
    with pytest.raises(ValueError, match=f"id {record_id} is in both"):
        server.mutate(delete_ids=[record_id], flip_ids=[record_id])
    assert server.records is before


def test_mutate_needs_the_admin_token(server: SandboxServer) -> None:
    before = server.records
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = requests.post(
            server.url + "/_sandbox/mutate", json={"deletions": 5}, headers=headers, timeout=10
        )
        assert response.status_code == 401
    assert server.records is before


def test_a_non_json_body_is_refused(server: SandboxServer) -> None:
    response = requests.post(
        server.url + "/_sandbox/mutate",
        data=b"deletions=5",
        headers=admin_headers(server),
        timeout=10,
    )
    assert response.status_code == 400
    assert "JSON object" in response.json()["detail"]
    assert len(server.records) == RECORDS


# --------------------------------------------------------------------------- the CLI


def test_the_cli_parses_mutations() -> None:
    args = build_parser().parse_args(
        ["--mutations", "inserts=5,deletions=3,flips=4,seed=7,from=2023-01-01,until=2025-12-31"]
    )
    assert args.mutations == MutationSpec(
        seed=7,
        inserts=5,
        deletions=3,
        flips=4,
        start=date(2023, 1, 1),
        until=date(2025, 12, 31),
    )
    assert build_parser().parse_args(["--mutations", "flips=2"]).mutations == MutationSpec(flips=2)
    assert build_parser().parse_args([]).mutations is None


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("inserts=x", "'inserts=x'"),
        ("inserts=-2", "inserts"),
        ("deletes=3", "'deletes=3'"),
        ("flips", "'flips'"),
        ("flips=1,flips=2", "twice"),
        ("from=2025-02-30", "from"),
        ("from=2025-03-01,until=2025-02-01", "until"),
        ("inserts=5;deletions=2", "'inserts=5;deletions=2'"),
    ],
)
def test_the_cli_refuses_bad_mutations(
    value: str, named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(["--port", "0", "--mutations", value])
    assert excinfo.value.code == 2
    error = capsys.readouterr().err
    assert "--mutations" in error, error
    assert named in error, error


def test_the_cli_refuses_mutations_the_data_cannot_take(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LUCCA_SANDBOX_ADMIN_TOKEN", raising=False)
    with pytest.raises(SystemExit) as excinfo:
        main(["--port", "0", "--records", "50", "--mutations", "deletions=51"])
    assert excinfo.value.code == 2
    captured = capsys.readouterr()
    assert "argument --mutations: deletions=51, but only 50 records" in captured.err
    assert "listening" not in captured.out  # refused before binding


def test_a_sandbox_process_mutates_at_start_and_on_demand(tmp_path: Path) -> None:
    spec = "inserts=3,deletions=2,flips=2,seed=7"
    log = tmp_path / "sandbox.log"
    with SandboxServer(SandboxConfig(records=RECORDS)) as twin, requests.Session() as http:
        http.headers["Authorization"] = f"lucca application={SANDBOX_KEY}"
        expected = twin.mutate(seed=7, inserts=3, deletions=2, flips=2)
        with SandboxProcess(
            ["--records", str(RECORDS), "--mutations", spec], log_path=str(log)
        ) as process:
            assert listing(process.url, http) == listing(twin.url, http)
            assert process.mutate(seed=8, flips=1, from_=date(2025, 3, 1)) == twin.mutate(
                seed=8, flips=1, from_=date(2025, 3, 1)
            )
            assert listing(process.url, http) == listing(twin.url, http)
            with pytest.raises(ValueError, match="'inserts' must be an integer >= 0"):
                process.mutate(inserts=-1)
            assert count(process.url, http) == len(twin.records)
        started = log.read_text()
        assert f"Mutations at start: {json.dumps(expected)}" in started
