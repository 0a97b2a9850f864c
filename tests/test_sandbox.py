"""Tests of the Lucca sandbox: real HTTP against an in-process server, plus the CLI.

The sandbox is the ground truth every other test, the demo and the benchmark rely on, so
these tests pin its contract: strict query validation, cursor paging without duplicates or
trailing empty pages, both bound readings, the tenant rate limit and replayable faults.
"""

from __future__ import annotations

import base64
import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from lucca_sandbox import (
    API_PATH,
    DEFAULT_API_KEY,
    FAULT_KINDS,
    FaultSchedule,
    RateLimiter,
    RecordMove,
    SandboxConfig,
    SandboxServer,
    generate_records,
)
from lucca_sandbox.__main__ import main
from lucca_sandbox.process import SandboxProcess

API_KEY = DEFAULT_API_KEY
START = date(2025, 1, 1)
END = date(2025, 12, 31)
Params = dict[str, Any] | list[tuple[str, Any]]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def shared() -> Iterator[SandboxServer]:
    """A read-only server shared by the tests that never change its settings."""
    with SandboxServer(SandboxConfig(records=2000)) as server:
        yield server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"lucca application={API_KEY}"
        yield session


def sandbox(**overrides: Any) -> SandboxServer:
    """A fresh server for tests that change settings or count requests."""
    overrides.setdefault("records", 300)
    return SandboxServer(SandboxConfig(**overrides))


def get(
    server: SandboxServer, session: requests.Session, params: Params | None = None
) -> requests.Response:
    return session.get(server.api_url, params=params, timeout=10, allow_redirects=False)


def page_items(server: SandboxServer, session: requests.Session, params: Params) -> dict[str, Any]:
    response = get(server, session, params)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def follow(
    server: SandboxServer, session: requests.Session, params: list[tuple[str, Any]]
) -> list[list[dict[str, Any]]]:
    """Follow ``next`` cursors from the first page; returns the pages (bounded loop)."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    for _ in range(10_000):
        query = [*params, ("limit", 100), ("fields.root", "next")]
        if cursor is not None:
            query.append(("page", cursor))
        payload = page_items(server, session, query)
        pages.append(payload["items"])
        cursor = payload["next"]
        if cursor is None:
            return pages
    raise AssertionError("pagination did not terminate")


def assert_problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"type", "title", "status", "detail"}
    assert body["status"] == status
    return body


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [record["id"] for record in records]


def admin_headers(server: SandboxServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


# --------------------------------------------------------------------------- data


def test_generate_records_is_deterministic_and_realistic() -> None:
    records = generate_records(7, 4000, START, END)
    assert records == generate_records(7, 4000, START, END)
    assert records != generate_records(8, 4000, START, END)

    record_ids = ids(records)
    assert record_ids == sorted(set(record_ids))
    assert record_ids[0] >= 1
    assert any(b - a > 1 for a, b in itertools.pairwise(record_ids))  # gaps
    owners = {r["ownerId"] for r in records}
    assert 150 <= len(owners) <= 999
    assert min(owners) >= 1
    trainings = {r["training"]["id"]: r["training"] for r in records}
    assert 30 <= len(trainings) <= 50
    titles = [t["title"] for t in trainings.values()]
    assert any(len(title) > 80 for title in titles)
    assert any(ch in title for title in titles for ch in "éèàçô")
    assert {t["level"] for t in trainings.values()} == {"Beginner", "Middle", "Expert"}

    ends = [r["sessionEndsOn"] for r in records]
    assert min(ends) >= START.isoformat()
    assert max(ends) <= END.isoformat()
    assert len({e[:7] for e in ends}) == 12  # every month of the range is used
    descents = sum(1 for a, b in itertools.pairwise(ends) if b < a)
    assert 0.35 < descents / len(ends) < 0.65  # end dates unrelated to id order
    for r in records:
        span = (
            date.fromisoformat(r["sessionEndsOn"]) - date.fromisoformat(r["sessionStartsOn"])
        ).days
        assert 0 <= span <= 4
        duration = r["durationInHours"]
        assert isinstance(duration, int | float)
        assert not isinstance(duration, bool)
        assert duration > 0
        assert round(duration * 100) == pytest.approx(duration * 100)

    csv_like = [r for r in records if r.get("sessionId") is None]
    assert 0.10 < len(csv_like) / len(records) < 0.20
    assert any("sessionId" not in r for r in csv_like)
    assert any("sessionId" in r and r["sessionId"] is None for r in csv_like)
    assert all(r.get("trainingDemandId") is None for r in csv_like)
    not_attended = sum(1 for r in records if r["hasAttended"] is False)
    assert 0.06 < not_attended / len(records) < 0.14
    assert any(isinstance(r["durationInHours"], float) for r in records)
    assert any(isinstance(r["durationInHours"], int) for r in records)


def test_generate_records_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="count"):
        generate_records(1, -1, START, END)
    with pytest.raises(ValueError, match="start"):
        generate_records(1, 10, END, START)
    assert generate_records(1, 0, START, START) == []


# --------------------------------------------------------------------------- paging


def test_following_cursors_returns_every_record_once(
    shared: SandboxServer, http: requests.Session
) -> None:
    pages = follow(shared, http, [])
    assert len(pages) == 20  # 2000 records: the 20th page ends it, no empty 21st page
    assert all(len(page) == 100 for page in pages)
    assert [i for page in pages for i in ids(page)] == ids(shared.records)


def test_following_cursors_with_filters(shared: SandboxServer, http: requests.Session) -> None:
    expected = [r for r in shared.records if r["hasAttended"] and r["sessionEndsOn"] > "2025-03-31"]
    pages = follow(shared, http, [("hasAttended", "true"), ("sessionEndOnAfter", "2025-03-31")])
    assert all(pages)
    assert len(pages) == -(-len(expected) // 100)
    assert [i for page in pages for i in ids(page)] == ids(expected)


def test_items_are_in_id_order_not_date_order(
    shared: SandboxServer, http: requests.Session
) -> None:
    items = page_items(shared, http, {"limit": 100})["items"]
    assert ids(items) == sorted(ids(items))
    ends = [r["sessionEndsOn"] for r in items]
    assert ends != sorted(ends)


def test_default_limit_and_response_headers(shared: SandboxServer, http: requests.Session) -> None:
    response = get(shared, http)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(response.content)
    assert response.raw.version == 11
    assert response.headers.get("Connection", "").lower() != "close"
    assert ids(response.json()["items"]) == ids(shared.records[:20])
    assert "é" in response.content.decode("utf-8") or "è" in response.content.decode("utf-8")


@pytest.mark.parametrize(
    ("fields", "keys"),
    [
        (None, {"items"}),
        ("count", {"items", "count"}),
        ("next", {"items", "next"}),
        ("prev,next,count", {"items", "prev", "next", "count"}),
    ],
)
def test_root_fields_only_when_asked(
    shared: SandboxServer, http: requests.Session, fields: str | None, keys: set[str]
) -> None:
    params = {"limit": 10} if fields is None else {"limit": 10, "fields.root": fields}
    payload = page_items(shared, http, params)
    assert set(payload) == keys
    if "count" in keys:
        assert payload["count"] == len(shared.records)


def test_prev_cursor_and_integer_pages(shared: SandboxServer, http: requests.Session) -> None:
    first = page_items(shared, http, {"limit": 100, "fields.root": "prev,next"})
    assert first["prev"] is None
    second = page_items(
        shared, http, {"limit": 100, "fields.root": "prev,next", "page": first["next"]}
    )
    assert ids(second["items"]) == ids(shared.records[100:200])
    back = page_items(shared, http, {"limit": 100, "page": second["prev"]})
    assert ids(back["items"]) == ids(first["items"])

    assert ids(page_items(shared, http, {"limit": 100, "page": 0})["items"]) == ids(
        shared.records[:100]
    )
    third = page_items(shared, http, {"limit": 100, "page": 3, "fields.root": "next"})
    assert ids(third["items"]) == ids(shared.records[300:400])
    assert third["next"] is not None
    last = page_items(shared, http, {"limit": 100, "page": 19, "fields.root": "next"})
    assert len(last["items"]) == 100
    assert last["next"] is None
    beyond = page_items(shared, http, {"limit": 100, "page": 25, "fields.root": "next"})
    assert beyond == {"items": [], "next": None}


def test_limit_zero_counts_without_a_next_page(
    shared: SandboxServer, http: requests.Session
) -> None:
    payload = page_items(shared, http, {"limit": 0, "fields.root": "next,count"})
    assert payload == {"items": [], "next": None, "count": len(shared.records)}


# --------------------------------------------------------------------------- filters


def test_owner_and_training_filters(shared: SandboxServer, http: requests.Session) -> None:
    owners = sorted({r["ownerId"] for r in shared.records[:50]})[:2]
    trainings = sorted({r["training"]["id"] for r in shared.records[:50]})[:2]

    by_owner = page_items(
        shared,
        http,
        [
            ("ownerIds", owners[0]),
            ("ownerIds", owners[1]),
            ("limit", 100),
            ("fields.root", "count"),
        ],
    )
    expected = [r for r in shared.records if r["ownerId"] in owners]
    assert by_owner["count"] == len(expected) > 0
    assert ids(by_owner["items"]) == ids(expected[:100])

    by_training = page_items(
        shared,
        http,
        [("trainingId", t) for t in trainings] + [("limit", 100), ("fields.root", "count")],
    )
    expected = [r for r in shared.records if r["training"]["id"] in trainings]
    assert by_training["count"] == len(expected) > 0
    assert ids(by_training["items"]) == ids(expected[:100])


@pytest.mark.parametrize("attended", ["true", "false"])
def test_has_attended_filter(shared: SandboxServer, http: requests.Session, attended: str) -> None:
    payload = page_items(shared, http, {"hasAttended": attended, "fields.root": "count"})
    expected = [r for r in shared.records if r["hasAttended"] is (attended == "true")]
    assert payload["count"] == len(expected) > 0
    assert ids(payload["items"]) == ids(expected[:20])


def test_combined_filters(shared: SandboxServer, http: requests.Session) -> None:
    owner = shared.records[0]["ownerId"]
    params = [
        ("ownerIds", owner),
        ("hasAttended", "true"),
        ("sessionEndOnAfter", "2025-02-01"),
        ("sessionEndOnBefore", "2025-11-30"),
        ("fields.root", "count"),
        ("limit", 100),
    ]
    expected = [
        r
        for r in shared.records
        if r["ownerId"] == owner
        and r["hasAttended"]
        and "2025-02-01" < r["sessionEndsOn"] < "2025-11-30"
    ]
    payload = page_items(shared, http, params)
    assert payload["count"] == len(expected)
    assert ids(payload["items"]) == ids(expected)


def test_both_bound_readings(http: requests.Session) -> None:
    with sandbox(records=2000) as server:
        day = server.records[0]["sessionEndsOn"]
        on_day = {r["id"] for r in server.records if r["sessionEndsOn"] == day}
        assert on_day

        def window(after: str | None, before: str | None) -> set[int]:
            params: dict[str, Any] = {"fields.root": "next", "limit": 100}
            if after:
                params["sessionEndOnAfter"] = after
            if before:
                params["sessionEndOnBefore"] = before
            found: set[int] = set()
            for _ in range(100):
                payload = page_items(server, http, params)
                found |= set(ids(payload["items"]))
                if payload["next"] is None:
                    return found
                params["page"] = payload["next"]
            raise AssertionError("no end")

        assert window(day, None).isdisjoint(on_day)
        assert window(None, day).isdisjoint(on_day)
        assert window(day, day) == set()
        assert {r["id"] for r in server.records if r["sessionEndsOn"] > day} == window(day, None)

        server.configure(bounds="inclusive")
        assert on_day <= window(day, None)
        assert on_day <= window(None, day)
        assert window(day, day) == on_day
        assert {r["id"] for r in server.records if r["sessionEndsOn"] <= day} == window(None, day)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "params",
    [
        [("ownerIds", "416,23")],
        [("ownerIds", "0")],
        [("ownerIds", "-3")],
        [("ownerIds", "abc")],
        [("ownerIds", "")],
        [("ownerIds", str(2**31))],
        [("trainingId", "45,46")],
        [("trainingId", "0")],
        [("trainingId", "1.5")],
        [("hasAttended", "True")],
        [("hasAttended", "1")],
        [("hasAttended", "")],
        [("sessionEndOnAfter", "2025-1-05")],
        [("sessionEndOnAfter", "20250105")],
        [("sessionEndOnBefore", "2025-02-30")],
        [("sessionEndOnBefore", "2025-01-05T00:00:00")],
        [("fields.root", "prev,total")],
        [("fields.root", "Count")],
        [("limit", "101")],
        [("limit", "-1")],
        [("limit", "ten")],
        [("limit", "10"), ("limit", "20")],
        [("page", "garbage")],
        [("page", "-1")],
        [("page", "!not*base64")],
        [("page", "!" + base64.urlsafe_b64encode(b"hello").decode())],
        [("page", "!" + base64.urlsafe_b64encode(b"100.0123456789abcdef").decode())],
        [("foo", "1")],
        [("ownerId", "416")],
        [("sessionEndsOnAfter", "2025-01-01")],
    ],
    ids=lambda params: "&".join(f"{k}={v}" for k, v in params),
)
def test_invalid_queries_are_400(
    shared: SandboxServer, http: requests.Session, params: list[tuple[str, str]]
) -> None:
    body = assert_problem(get(shared, http, params), 400)
    assert body["detail"]


def test_comma_lists_get_a_hint(shared: SandboxServer, http: requests.Session) -> None:
    body = assert_problem(get(shared, http, {"ownerIds": "416,23"}), 400)
    assert "ownerIds=416&ownerIds=23" in body["detail"]


def test_cursor_bound_to_its_filters(shared: SandboxServer, http: requests.Session) -> None:
    first = page_items(shared, http, {"hasAttended": "true", "fields.root": "next"})
    cursor = first["next"]
    assert isinstance(cursor, str)
    assert cursor.startswith("!")
    ok = get(shared, http, {"hasAttended": "true", "page": cursor})
    assert ok.status_code == 200
    assert_problem(get(shared, http, {"hasAttended": "false", "page": cursor}), 400)
    assert_problem(get(shared, http, {"page": cursor}), 400)


def test_authentication(http: requests.Session) -> None:
    secret = "s3cr3t-key-4242"
    with sandbox(api_key=secret) as server:
        url = server.api_url
        for headers in [
            {},
            {"Authorization": "lucca application=wrong-key-9999"},
            {"Authorization": f"Bearer {secret}"},
            {"Authorization": f"lucca application={secret} "},
            {"Authorization": f"Lucca Application={secret}"},
        ]:
            response = requests.get(url, headers=headers, timeout=10)
            assert_problem(response, 401)
            assert secret not in response.text
            assert "wrong-key-9999" not in response.text
        good = requests.get(
            url, headers={"Authorization": f"lucca application={secret}"}, timeout=10
        )
        assert good.status_code == 200


def test_unknown_path_and_method(shared: SandboxServer, http: requests.Session) -> None:
    assert_problem(http.get(shared.url + "/talent-training/api/v2/trainings", timeout=10), 404)
    response = http.post(shared.api_url, json={}, timeout=10)
    assert_problem(response, 405)
    assert response.headers["Allow"] == "GET"


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_answers_429_with_retry_after(http: requests.Session) -> None:
    with sandbox(requests_per_minute=3) as server:
        assert [get(server, http).status_code for _ in range(3)] == [200, 200, 200]
        for _ in range(2):
            response = get(server, http)
            assert_problem(response, 429)
            assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert requests.get(server.url + "/_sandbox/health", timeout=10).status_code == 200
        stats = server.stats()
        assert stats["by_status"] == {"200": 3, "429": 2}
        assert stats["requests"] == 5
        server.configure(requests_per_minute=0)
        assert get(server, http).status_code == 200


def test_rate_limiter_sliding_window_ignores_refusals() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.admit() is None
    now[0] = 30.0
    assert limiter.admit() is None
    now[0] = 59.2
    assert limiter.admit() == 1  # the t=0 slot frees at t=60
    for _ in range(50):  # refusals are not admissions: they do not extend the penalty
        assert limiter.admit() == 1
    now[0] = 60.5
    assert limiter.admit() is None
    now[0] = 61.0
    assert limiter.admit() == 29  # the t=30 slot frees at t=90
    limiter.reset()
    assert limiter.admit() is None
    limiter.requests_per_minute = 0
    assert all(limiter.admit() is None for _ in range(100))


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "408"])
def test_status_faults(http: requests.Session, kind: str) -> None:
    with sandbox(faults=FaultSchedule(at={1: kind})) as server:
        body = assert_problem(get(server, http), int(kind))
        assert body["title"]
        assert get(server, http).status_code == 200
        assert server.stats()["faults_by_kind"] == {kind: 1}


@pytest.mark.parametrize(
    ("kind", "expected"), [("429", "1"), ("429-long", "3600"), ("429-none", None)]
)
def test_429_faults(http: requests.Session, kind: str, expected: str | None) -> None:
    with sandbox(faults=FaultSchedule(at={1: kind})) as server:
        response = get(server, http)
        assert_problem(response, 429)
        assert response.headers.get("Retry-After") == expected
        assert get(server, http).status_code == 200


def test_429_with_http_date(http: requests.Session) -> None:
    with sandbox(faults=FaultSchedule(at={1: "429-date"})) as server:
        response = get(server, http)
        assert_problem(response, 429)
        when = parsedate_to_datetime(response.headers["Retry-After"])
        delay = (when - datetime.now(timezone.utc)).total_seconds()
        assert 1.0 <= delay <= 4.0


def test_drop_fault_closes_without_response(http: requests.Session) -> None:
    with sandbox(faults=FaultSchedule(at={2: "drop"})) as server:
        assert get(server, http).status_code == 200
        with pytest.raises(requests.exceptions.ConnectionError):
            get(server, http)
        assert get(server, http).status_code == 200
        stats = server.stats()
        assert stats["requests"] == 3
        assert stats["by_status"] == {"200": 2}
        assert stats["faults"] == 1


def test_slow_fault(http: requests.Session) -> None:
    with sandbox(faults=FaultSchedule(at={1: "slow"}), slow_seconds=0.5) as server:
        started = time.monotonic()
        response = get(server, http)
        assert response.status_code == 200
        assert response.json()["items"]
        assert time.monotonic() - started >= 0.45
        started = time.monotonic()
        assert get(server, http).status_code == 200
        assert time.monotonic() - started < 0.4


def test_html_fault(http: requests.Session) -> None:
    with sandbox(faults=FaultSchedule(at={1: "html"})) as server:
        response = get(server, http)
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/html")
        assert "<html" in response.text
        with pytest.raises(requests.exceptions.JSONDecodeError):
            response.json()


def test_redirect_fault(http: requests.Session) -> None:
    with sandbox(
        faults=FaultSchedule(at={1: "redirect"}), redirect_url="http://lucca.invalid/"
    ) as s:
        response = get(s, http, {"limit": 5, "hasAttended": "true"})
        assert response.status_code == 302
        assert response.headers["Location"] == (
            f"http://lucca.invalid{API_PATH}?limit=5&hasAttended=true"
        )
    with sandbox(faults=FaultSchedule(at={1: "redirect"})) as server:
        # Without redirect_url the sandbox points back at itself, so following works.
        response = http.get(server.api_url, params={"limit": 5}, timeout=10)
        assert response.status_code == 200
        assert len(response.json()["items"]) == 5
        assert response.history[0].status_code == 302


def test_fault_schedule_is_deterministic() -> None:
    schedule = FaultSchedule(rate=0.3, kinds=("503", "500"), seed=7)
    draws = [schedule.fault_for(n) for n in range(1, 2001)]
    assert draws == [
        FaultSchedule(rate=0.3, kinds=["503", "500"], seed=7).fault_for(n) for n in range(1, 2001)
    ]
    assert draws != [
        FaultSchedule(rate=0.3, kinds=("503", "500"), seed=8).fault_for(n) for n in range(1, 2001)
    ]
    faulted = [d for d in draws if d is not None]
    assert 0.25 < len(faulted) / len(draws) < 0.35
    assert set(faulted) == {"503", "500"}
    mixed = FaultSchedule(at={1: "drop"}, rate=0.0, kinds=("503",))
    assert mixed.fault_for(1) == "drop"
    assert mixed.fault_for(2) is None
    assert FaultSchedule.from_dict(schedule.to_dict()) == schedule


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"at": {1: "teapot"}}, "unknown fault kind"),
        ({"at": {0: "503"}}, ">= 1"),
        ({"rate": 1.5, "kinds": ("503",)}, "0..1"),
        ({"rate": 0.5}, "at least one fault kind"),
        ({"kinds": ("503", "nope")}, "unknown fault kind"),
    ],
)
def test_fault_schedule_validation(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultSchedule(**kwargs)


def test_fault_replay_over_http(http: requests.Session) -> None:
    schedule = FaultSchedule(rate=0.5, kinds=("503", "502"), seed=3)
    expected = [int(schedule.fault_for(n) or 200) for n in range(1, 21)]
    assert 200 in expected
    assert 503 in expected or 502 in expected
    with sandbox(faults=schedule) as server:
        assert [get(server, http).status_code for _ in range(20)] == expected
        server.reset_stats()
        assert [get(server, http).status_code for _ in range(20)] == expected


def test_every_fault_kind_is_tested() -> None:
    tested = {"500", "502", "503", "504", "408", "429", "429-long", "429-none", "429-date"}
    tested |= {"drop", "slow", "html", "redirect"}
    assert set(FAULT_KINDS) == tested


# --------------------------------------------------------------------------- admin


def test_admin_health_stats_and_reset(http: requests.Session) -> None:
    with sandbox(faults=FaultSchedule(at={1: "503"})) as server:
        admin = requests.Session()  # GET health/stats need no token
        assert admin.get(server.url + "/_sandbox/health", timeout=10).json() == {"status": "ok"}
        assert get(server, http).status_code == 503
        assert get(server, http).status_code == 200
        assert requests.get(server.api_url, timeout=10).status_code == 401
        stats = admin.get(server.url + "/_sandbox/stats", timeout=10).json()
        assert stats == {
            "requests": 3,
            "by_status": {"200": 1, "401": 1, "503": 1},
            "faults": 1,
            "faults_by_kind": {"503": 1},
            "moves_applied": 0,
            "records": 300,
        }
        assert stats == server.stats()
        reset = admin.post(
            server.url + "/_sandbox/reset-stats", headers=admin_headers(server), timeout=10
        )
        assert reset.status_code == 200
        assert server.stats()["requests"] == 0
        assert get(server, http).status_code == 503  # numbering restarted at 1
        server.reset_stats()
        assert server.stats() == {
            "requests": 0,
            "by_status": {},
            "faults": 0,
            "faults_by_kind": {},
            "moves_applied": 0,
            "records": 300,
        }
        assert_problem(admin.get(server.url + "/_sandbox/nope", timeout=10), 404)


def test_admin_config_over_http(http: requests.Session) -> None:
    with sandbox() as server:
        config_url = server.url + "/_sandbox/config"
        get(server, http)
        token = admin_headers(server)
        answer = requests.post(
            config_url,
            json={
                "bounds": "inclusive",
                "requests_per_minute": 100,
                "faults": {"at": {"2": "504"}, "rate": 0, "kinds": [], "seed": 1},
                "slow_seconds": 0.1,
                "redirect_url": "http://elsewhere.invalid",
                "order": "end_date",
                "moves": [{"id": server.records[0]["id"], "to": "2025-06-01", "after_request": 9}],
            },
            headers=token,
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        effective = requests.get(config_url, timeout=10).json()
        assert effective["bounds"] == "inclusive"
        assert effective["requests_per_minute"] == 100
        assert effective["faults"]["at"] == {"2": "504"}
        assert effective["redirect_url"] == "http://elsewhere.invalid"
        assert effective["order"] == "end_date"
        assert effective["moves"] == [
            {"id": server.records[0]["id"], "to": ["2025-06-01"], "after_request": 9, "every": None}
        ]
        assert server.config.moves == (RecordMove(server.records[0]["id"], ("2025-06-01",), 9),)
        assert server.config.slow_seconds == 0.1
        assert get(server, http).status_code == 504  # request 2: numbering not reset

        answer = requests.post(
            config_url, json={"faults": None, "moves": []}, headers=token, timeout=10
        )
        answer.raise_for_status()
        assert server.config.faults is None
        assert not server.config.moves

        answer = requests.post(
            config_url, json={"seed": 5, "records": 50}, headers=token, timeout=10
        )
        assert answer.json()["records"] == 50
        assert server.records == generate_records(5, 50, START, END)
        assert page_items(server, http, {"fields.root": "count"})["count"] == 50
        assert server.stats()["requests"] == 3  # data changes keep the numbering


@pytest.mark.parametrize(
    "body",
    [
        {"bounds": "sideways"},
        {"nope": 1},
        {"requests_per_minute": -1},
        {"faults": {"at": {"1": "teapot"}}},
        {"records": "many"},
        {"start": "2025-02-30"},
        {"start": "2026-01-01"},
        {"delete_ids": "1,2"},
        {"add_records": [{"id": 0, "sessionEndsOn": "2025-01-01"}]},
        {"add_records": [{"id": 5}]},
        {"bounds": "inclusive", "records": -1},
        {"order": "date"},
        {"moves": {"id": 1, "to": "2025-01-05", "after_request": 1}},
        {"moves": [{"id": 1, "to": "2025-01-05"}]},
        {"moves": [{"id": 1, "to": "2025-01-05", "after_request": 0}]},
        {"moves": [{"id": 1, "to": "2025-02-30", "after_request": 1}]},
        {"moves": [{"id": 1, "to": [], "after_request": 1}]},
        {"moves": [{"id": 1, "to": ["2025-01-05", "2025-01-06"], "after_request": 1}]},
        {"moves": [{"id": 1, "to": "2025-01-05", "after_request": 1, "every": 0}]},
        {"moves": [{"id": 1, "to": "2025-01-05", "after_request": 1, "when": 2}]},
        {"moves": [{"id": 10**9, "to": "2025-01-05", "after_request": 1}]},
        {"bounds": "inclusive", "moves": [{"id": 10**9, "to": "2025-01-05", "after_request": 1}]},
        [1, 2],
    ],
)
def test_admin_config_rejects_bad_settings(body: Any) -> None:
    with sandbox() as server:
        before = server.records
        response = requests.post(
            server.url + "/_sandbox/config", json=body, headers=admin_headers(server), timeout=10
        )
        assert_problem(response, 400)
        assert server.config.bounds == "exclusive"  # nothing applied
        assert server.config.order == "id"
        assert server.config.moves == ()
        assert server.records is before


def test_data_changes_clear_the_filter_cache(http: requests.Session) -> None:
    with sandbox(records=500) as server:
        params = {"fields.root": "count", "limit": 100, "sessionEndOnBefore": "2025-07-01"}
        before = page_items(server, http, params)
        doomed = ids(before["items"][:2])
        server.configure(delete_ids=doomed)
        after = page_items(server, http, params)
        assert after["count"] == before["count"] - 2
        assert not set(doomed) & set(ids(after["items"]))

        late = {
            "id": server.records[-1]["id"] + 1000,
            "ownerId": 416,
            "training": {"type": "object", "readonly": True, "properties": {}},
            "sessionStartsOn": "2025-01-04",
            "sessionEndsOn": "2025-01-04",
            "hasAttended": True,
            "durationInHours": 2.35,
        }
        answer = requests.post(
            server.url + "/_sandbox/config",
            json={"add_records": [late]},
            headers=admin_headers(server),
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.json()["records"] == 499
        with_late = page_items(server, http, {**params, "fields.root": "count,next"})
        assert with_late["count"] == after["count"] + 1
        assert server.records[-1] == late
        last = page_items(server, http, {"ownerIds": 416, "sessionEndOnBefore": "2025-01-05"})
        assert late in last["items"]
        assert b'"durationInHours":2.35' in get(server, http, {"ownerIds": 416}).content


def test_python_configure_accepts_objects_and_validates() -> None:
    with sandbox() as server:
        server.configure(
            faults=FaultSchedule(at={2: "503"}), start=date(2024, 1, 1), end="2024-06-30"
        )
        assert server.config.faults == FaultSchedule(at={2: "503"})
        assert max(r["sessionEndsOn"] for r in server.records) <= "2024-06-30"
        with pytest.raises(ValueError, match="bounds"):
            server.configure(bounds="both")
        with pytest.raises(ValueError, match="unknown"):
            server.configure(colour="blue")


def test_no_access_log_unless_verbose(
    http: requests.Session, capfd: pytest.CaptureFixture[str]
) -> None:
    with sandbox() as server:
        get(server, http)
    assert capfd.readouterr().err == ""
    with sandbox(verbose=True) as server:
        get(server, http)
    assert API_PATH in capfd.readouterr().err


def test_stop_closes_the_socket() -> None:
    server = sandbox().start()
    url = server.url + "/_sandbox/health"
    assert requests.get(url, timeout=10).status_code == 200
    server.stop()
    server.stop()  # idempotent
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, timeout=2)


# --------------------------------------------------------------------------- order and moves

FIVE_DAYS = (date(2025, 1, 1), date(2025, 1, 5))


def by_end_date(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["sessionEndsOn"], r["id"]))


def test_end_date_order_pages_by_end_date_then_id(http: requests.Session) -> None:
    with sandbox(records=1000, order="end_date") as server:
        pages = follow(server, http, [])
        assert [i for page in pages for i in ids(page)] == ids(by_end_date(server.records))
        assert ids(server.records) == sorted(ids(server.records))  # the truth stays in id order
        params = [("hasAttended", "true"), ("sessionEndOnBefore", "2025-07-01")]
        expected = [
            r
            for r in by_end_date(server.records)
            if r["hasAttended"] and r["sessionEndsOn"] < "2025-07-01"
        ]
        assert [i for page in follow(server, http, params) for i in ids(page)] == ids(expected)
        server.configure(order="id")
        assert [i for page in follow(server, http, []) for i in ids(page)] == ids(server.records)


def issue_case(order: str) -> tuple[SandboxServer, dict[str, Any], dict[str, Any]]:
    """250 records over five days; a day-1 record of page 1 moves to day 5 after page 1."""
    records = generate_records(42, 250, *FIVE_DAYS)
    ordered = by_end_date(records)
    assert {r["sessionEndsOn"] for r in records} == {f"2025-01-0{d}" for d in range(1, 6)}
    moved = ordered[10]
    assert moved["sessionEndsOn"] == "2025-01-01"
    boundary = ordered[100]  # first record of page 2 before the move
    move = RecordMove.from_dict({"id": moved["id"], "to": ["2025-01-05"], "after_request": 1})
    server = SandboxServer(
        SandboxConfig(records=250, start=FIVE_DAYS[0], end=FIVE_DAYS[1], order=order, moves=[move])
    )
    return server, moved, boundary


def test_a_record_moved_mid_run_shifts_end_date_pages(http: requests.Session) -> None:
    """The integrity issue: offset cursors over a date order serve one record twice, lose one."""
    server, moved, boundary = issue_case("end_date")
    with server:
        pages = follow(server, http, [])
        served = [r for page in pages for r in page]
        counts = Counter(ids(served))
        assert [len(page) for page in pages] == [100, 100, 50]
        assert counts[moved["id"]] == 2  # on page 1 (day 1) and again on page 3 (day 5)
        assert {i for i, n in counts.items() if n > 1} == {moved["id"]}
        assert set(ids(server.records)) - set(counts) == {boundary["id"]}  # exactly one lost
        copies = [r for r in served if r["id"] == moved["id"]]
        assert [r["sessionEndsOn"] for r in copies] == ["2025-01-01", "2025-01-05"]
        assert copies[0] == moved
        shifted = date.fromisoformat(moved["sessionStartsOn"]) + timedelta(days=4)
        assert copies[1]["sessionStartsOn"] == shifted.isoformat()
        assert {k: v for k, v in copies[1].items() if not k.startswith("session")} == {
            k: v for k, v in moved.items() if not k.startswith("session")
        }
        # The truth reflects the move; the stats count it.
        (truth,) = [r for r in server.records if r["id"] == moved["id"]]
        assert truth == copies[1]
        assert server.stats()["moves_applied"] == 1
        assert server.stats()["requests"] == 3


def test_the_same_move_loses_nothing_in_id_order(http: requests.Session) -> None:
    server, moved, _boundary = issue_case("id")
    with server:
        served = [r for page in follow(server, http, []) for r in page]
        assert ids(served) == ids(server.records)  # every record exactly once, none lost
        (truth,) = [r for r in server.records if r["id"] == moved["id"]]
        assert truth["sessionEndsOn"] == "2025-01-05"
        assert server.stats()["moves_applied"] == 1


def test_moves_repeat_every_k_requests_and_restart_with_reset_stats(
    http: requests.Session,
) -> None:
    records = generate_records(42, 250, *FIVE_DAYS)
    target = next(r for r in records if r["sessionEndsOn"] == "2025-01-02")
    span = date.fromisoformat(target["sessionEndsOn"]) - date.fromisoformat(
        target["sessionStartsOn"]
    )
    move = RecordMove(target["id"], ("2025-01-05", "2025-01-01"), after_request=2, every=3)
    with sandbox(records=250, start=FIVE_DAYS[0], end=FIVE_DAYS[1], moves=[move]) as server:
        # The same filtered query each time: a stale filter cache would hide the moves.
        params = {"sessionEndOnAfter": "2025-01-04", "limit": 100}

        def on_day_5() -> bool:
            return target["id"] in ids(page_items(server, http, params)["items"])

        # Moves after requests 2 (day 5), 5 (day 1), 8 (day 5): seen from the next request.
        seen = [on_day_5() for _ in range(9)]
        assert seen == [False, False, True, True, True, False, False, False, True]
        assert server.stats()["moves_applied"] == 3
        (truth,) = [r for r in server.records if r["id"] == target["id"]]
        assert truth["sessionEndsOn"] == "2025-01-05"
        assert (
            date.fromisoformat(truth["sessionEndsOn"])
            - date.fromisoformat(truth["sessionStartsOn"])
            == span
        )

        server.reset_stats()  # numbering restarts: after 2 -> day 5 (again), after 5 -> day 1
        assert server.stats()["moves_applied"] == 0
        assert [on_day_5() for _ in range(6)] == [True] * 5 + [False]
        assert server.stats()["moves_applied"] == 2


def test_a_move_after_the_last_request_is_in_the_truth(http: requests.Session) -> None:
    record = generate_records(42, 300, START, END)[0]
    move = RecordMove(record["id"], ("2025-12-31",), after_request=1)
    with sandbox(moves=[move]) as server:
        assert get(server, http).status_code == 200
        deadline = time.monotonic() + 5
        while server.stats()["moves_applied"] == 0:
            assert time.monotonic() < deadline, (
                "request 1 was answered but not followed by its move"
            )
            time.sleep(0.01)
        assert server.records[0]["sessionEndsOn"] == "2025-12-31"


def test_moves_apply_by_request_number_not_by_handler_timing() -> None:
    record = generate_records(42, 300, START, END)[0]
    move = RecordMove(record["id"], ("2025-12-31",), after_request=1)
    server = sandbox(moves=[move])  # not started: drive the request numbering directly
    state = server._state
    epoch, number, _fault = state.begin_api_request()
    server.reset_stats()
    state.end_api_request(epoch, number)  # a slow request 1 finishing after the reset
    assert server.stats()["moves_applied"] == 0
    assert server.records[0] == record
    # Request 2 starting while request 1 is still being served: request 1 counts as answered.
    state.begin_api_request()
    assert server.stats()["moves_applied"] == 0
    state.begin_api_request()
    assert server.stats()["moves_applied"] == 1
    assert server.records[0]["sessionEndsOn"] == "2025-12-31"


def test_a_move_replaces_records_instead_of_mutating_them(http: requests.Session) -> None:
    record = generate_records(42, 300, START, END)[0]
    with sandbox(moves=[RecordMove(record["id"], ("2025-12-31",), after_request=1)]) as server:
        before = server.records
        get(server, http)
        get(server, http)
        assert server.records is not before
        assert before[0] == record  # a list read earlier keeps its snapshot
        assert server.records[0]["sessionEndsOn"] == "2025-12-31"


def test_moves_are_validated() -> None:
    unknown = SandboxConfig(moves=[RecordMove(10**9, "2025-01-05", after_request=1)])
    with pytest.raises(ValueError, match="no record with id"):
        SandboxServer(unknown)
    with pytest.raises(ValueError, match="every"):
        RecordMove(1, ("2025-01-05", "2025-01-06"), after_request=1)
    with pytest.raises(ValueError, match="after_request"):
        RecordMove(1, ("2025-01-05",), after_request=0)
    with pytest.raises(ValueError, match="order"):
        SandboxConfig(order="date")
    move = RecordMove(7, "2025-01-05", after_request=3, every=2)
    assert move.to == (date(2025, 1, 5),)
    assert RecordMove.from_dict(move.to_dict()) == move
    assert [move.target_after(n) for n in range(1, 8)] == [
        None,
        None,
        date(2025, 1, 5),
        None,
        date(2025, 1, 5),
        None,
        date(2025, 1, 5),
    ]


# --------------------------------------------------------------------------- a development tool


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "[2001:db8::1]", "sandbox"])
def test_non_loopback_bind_needs_allow_remote_and_a_key(host: str) -> None:
    with pytest.raises(ValueError, match="--allow-remote") as excinfo:
        SandboxConfig(host=host)
    assert "--api-key" in str(excinfo.value)
    with pytest.raises(ValueError, match="--api-key") as excinfo:
        SandboxConfig(host=host, allow_remote=True)
    assert "--allow-remote" not in str(excinfo.value)
    with pytest.raises(ValueError, match="--allow-remote"):
        SandboxConfig(host=host, api_key="xyz")
    assert SandboxConfig(host=host, allow_remote=True, api_key="xyz").host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.5", "localhost", "::1", "[::1]"])
def test_loopback_binds_need_nothing(host: str) -> None:
    assert SandboxConfig(host=host).host == host


class NoServer:
    """Stands in for SandboxServer in ``main``: records the config, never binds."""

    configs: list[SandboxConfig] = []

    def __init__(self, config: SandboxConfig) -> None:
        NoServer.configs.append(config)

    def start(self) -> None:
        raise OSError("not started by the test")

    def stop(self) -> None:
        pass


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[SandboxConfig]:
    import lucca_sandbox.__main__ as sandbox_main

    monkeypatch.delenv("LUCCA_SANDBOX_API_KEY", raising=False)
    monkeypatch.delenv("LUCCA_SANDBOX_ADMIN_TOKEN", raising=False)
    monkeypatch.setattr(sandbox_main, "SandboxServer", NoServer)
    configs: list[SandboxConfig] = []
    monkeypatch.setattr(NoServer, "configs", configs)
    return configs


@pytest.mark.parametrize(
    ("argv", "missing"),
    [
        (["--host", "0.0.0.0"], ["--allow-remote", "--api-key"]),
        (["--host", "0.0.0.0", "--allow-remote"], ["--api-key"]),
        (["--host", "0.0.0.0", "--api-key", "xyz"], ["--allow-remote"]),
        (["--host", "0.0.0.0", "--allow-remote", "--api-key", DEFAULT_API_KEY], ["--api-key"]),
    ],
)
def test_cli_refuses_a_public_bind_before_binding(
    argv: list[str],
    missing: list[str],
    no_server: list[SandboxConfig],
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    error = capsys.readouterr().err
    assert "not a loopback address" in error
    assert all(flag in error for flag in missing), error
    assert no_server == []  # refused before any server was built, let alone bound


def test_cli_admin_token_order_and_moves_reach_the_config(
    no_server: list[SandboxConfig], monkeypatch: pytest.MonkeyPatch
) -> None:
    move = '[{"id": 3, "to": ["2025-02-01", "2025-03-01"], "after_request": 2, "every": 5}]'
    assert main(["--admin-token", "flag-token", "--order", "end_date", "--moves", move]) == 1
    config = no_server.pop()
    assert config.admin_token == "flag-token"
    assert config.order == "end_date"
    assert config.moves == (RecordMove(3, ("2025-02-01", "2025-03-01"), 2, every=5),)
    monkeypatch.setenv("LUCCA_SANDBOX_ADMIN_TOKEN", "env-token")
    assert main(["--host", "0.0.0.0", "--allow-remote", "--api-key", "xyz"]) == 1
    config = no_server.pop()
    assert config.admin_token == "env-token"
    assert (config.host, config.allow_remote, config.order, config.moves) == (
        "0.0.0.0",
        True,
        "id",
        (),
    )


def test_admin_token_is_configured_or_generated() -> None:
    assert SandboxServer(SandboxConfig(admin_token="t0k3n-42")).admin_token == "t0k3n-42"
    first, second = SandboxServer().admin_token, SandboxServer().admin_token
    assert first != second
    assert len(first) >= 32
    server = SandboxServer(SandboxConfig(admin_token="t0k3n-42"))
    assert server.config.admin_token == "t0k3n-42"
    assert "t0k3n-42" not in repr(server.config)
    for bad in ["", "has space", "caf\u00e9", "new\nline"]:
        with pytest.raises(ValueError, match="admin_token"):
            SandboxConfig(admin_token=bad)


@pytest.mark.parametrize("endpoint", ["config", "reset-stats"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic RIGHT"},
        {"Authorization": "RIGHT"},
        {"Authorization": f"lucca application={API_KEY}"},
        {"Authorization": "Bearer RIGHT-and-more"},
        {"X-Sandbox-Token": "RIGHT"},
    ],
    ids=lambda headers: "|".join(f"{k}={v}" for k, v in headers.items()) or "none",
)
def test_admin_changes_need_the_token(
    http: requests.Session, endpoint: str, headers: dict[str, str]
) -> None:
    with sandbox(faults=FaultSchedule(at={1: "503"})) as server:
        token = server.admin_token
        headers = {k: v.replace("RIGHT", token) for k, v in headers.items()}
        assert get(server, http).status_code == 503
        config_before, records_before, stats_before = server.config, server.records, server.stats()
        url = f"{server.url}/_sandbox/{endpoint}"
        body = {"bounds": "inclusive", "records": 10, "faults": None}
        response = requests.post(url, json=body, headers=headers, timeout=10)
        problem = assert_problem(response, 401)
        assert "Bearer" in problem["detail"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert token not in response.text
        assert server.config is config_before  # nothing changed
        assert server.records is records_before
        assert server.stats() == stats_before
        # Reads stay open and never show the token.
        for name in ("health", "stats", "config"):
            answer = requests.get(f"{server.url}/_sandbox/{name}", timeout=10)
            assert answer.status_code == 200
            assert token not in answer.text

        answer = requests.post(url, json=body, headers=admin_headers(server), timeout=10)
        assert answer.status_code == 200, answer.text
        if endpoint == "config":
            assert server.config.bounds == "inclusive"
            assert len(server.records) == 10
        else:
            assert server.stats()["requests"] == 0


def test_cli_remote_bind_with_allow_remote_and_a_key(tmp_path: Path) -> None:
    port_file, stderr_file = tmp_path / "port", tmp_path / "stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LUCCA_SANDBOX_")}
    command = [sys.executable, "-m", "lucca_sandbox", "--host", "0.0.0.0"]
    command += ["--allow-remote", "--api-key", "xyz", "--port", "0", "--port-file", str(port_file)]
    command += ["--records", "50"]
    lines: queue.Queue[str] = queue.Queue()
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        port = wait_for_port(process, port_file)
        token_line, ready_line = lines.get(timeout=10), lines.get(timeout=10)
        assert token_line.startswith("Admin token (generated): "), token_line
        assert ready_line.startswith(f"Lucca sandbox listening on http://0.0.0.0:{port} ")
        token = token_line.split()[3]
        base = f"http://127.0.0.1:{port}"
        answer = requests.get(
            base + API_PATH, headers={"Authorization": "lucca application=xyz"}, timeout=10
        )
        assert answer.status_code == 200
        reset = base + "/_sandbox/reset-stats"
        assert_problem(requests.post(reset, timeout=10), 401)
        answer = requests.post(reset, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert answer.status_code == 200
        assert answer.json()["requests"] == 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, stderr_file.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(timeout=10)
        stdout.close()
    assert lines.empty()
    assert stderr_file.read_text() == ""


def test_sandbox_process_knows_the_token_it_hands_over(tmp_path: Path) -> None:
    with SandboxProcess(["--records", "50"]) as process:
        assert process.admin_token
        assert process.process is not None
        assert process.admin_token not in repr(process.process.args)
        assert process.admin("config", {"bounds": "inclusive"})["bounds"] == "inclusive"
        assert process.admin("reset-stats", {})["requests"] == 0
        bare = requests.post(process.url + "/_sandbox/config", json={"records": 1}, timeout=10)
        assert_problem(bare, 401)
        assert process.admin("config")["records"] == 50
    given = SandboxProcess(["--admin-token", "given-token-1234"], log_path=str(tmp_path / "log"))
    assert given.admin_token == "given-token-1234"
    with given:
        assert given.admin("config", {"order": "end_date"})["order"] == "end_date"


# --------------------------------------------------------------------------- speed


def test_pages_are_served_fast(http: requests.Session) -> None:
    with sandbox(records=50_000) as server:
        started = time.perf_counter()
        cursor: str | None = None
        seen = 0
        for _ in range(200):
            params: dict[str, Any] = {"limit": 100, "fields.root": "next"}
            if cursor:
                params["page"] = cursor
            payload = page_items(server, http, params)
            seen += len(payload["items"])
            cursor = payload["next"]
        elapsed = time.perf_counter() - started
        assert seen == 20_000
        assert cursor is not None
        assert elapsed < 20.0, f"200 pages took {elapsed:.1f}s"


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly(tmp_path: Path, signum: int) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "LUCCA_SANDBOX_API_KEY": "cli-key"}
    env.pop("LUCCA_SANDBOX_ADMIN_TOKEN", None)
    command = [sys.executable, "-m", "lucca_sandbox", "--port", "0"]
    command += ["--port-file", str(port_file), "--records", "100", "--bounds", "inclusive"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        port = wait_for_port(process, port_file)
        base = f"http://127.0.0.1:{port}"
        assert requests.get(base + "/_sandbox/health", timeout=10).json() == {"status": "ok"}
        response = requests.get(
            base + API_PATH, headers={"Authorization": "lucca application=cli-key"}, timeout=10
        )
        assert response.status_code == 200
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    token_line, ready_line = stdout.strip().splitlines()
    assert token_line.startswith("Admin token (generated): ")
    assert ready_line == (
        f"Lucca sandbox listening on http://127.0.0.1:{port} "
        "(100 records, bounds=inclusive, order=id)"
    )
    assert stderr == ""


def wait_for_port(process: subprocess.Popen[str], port_file: Path) -> int:
    deadline = time.monotonic() + 30
    while not port_file.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sandbox did not write its port file"
        time.sleep(0.05)
    return int(port_file.read_text())


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--faults", "x:503"], "--faults"),
        (["--faults", "3:teapot"], "--faults"),
        (["--fault-kinds", "503,nope"], "--fault-kinds"),
        (["--fault-rate", "0.1"], "--fault-kinds"),
        (["--fault-rate", "2"], "--fault-rate"),
        (["--port", "70000"], "--port"),
        (["--bounds", "sideways"], "--bounds"),
        (["--start", "2025-13-01"], "--start"),
        (["--start", "2025-06-01", "--end", "2025-01-01"], "--end"),
        (["--records", "-5"], "--records"),
        (["--redirect-url", "ftp://x"], "--redirect-url"),
        (["--order", "date"], "--order"),
        (["--moves", "not json"], "--moves"),
        (["--moves", '{"id": 1, "to": "2025-01-05", "after_request": 1}'], "--moves"),
        (["--moves", '[{"id": 1, "to": "2025-01-05"}]'], "--moves"),
        (["--admin-token", "two words"], "admin_token"),
    ],
)
def test_cli_rejects_bad_flags(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert flag in capsys.readouterr().err
