"""Tests of the Lucca sandbox: real HTTP against an in-process server, plus the CLI.

The sandbox is the ground truth every other test, the demo and the benchmark rely on, so
these tests pin its contract: strict query validation, cursor paging without duplicates or
trailing empty pages, both bound readings, the tenant rate limit and replayable faults.
"""

from __future__ import annotations

import base64
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_lucca.sandbox import (
    API_PATH,
    FAULT_KINDS,
    FaultSchedule,
    RateLimiter,
    SandboxConfig,
    SandboxServer,
    generate_records,
)
from airflow_provider_lucca.sandbox.__main__ import main

API_KEY = "sandbox-api-key"
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
        admin = requests.Session()  # no Authorization header: admin needs none
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
            "records": 300,
        }
        assert stats == server.stats()
        assert admin.post(server.url + "/_sandbox/reset-stats", timeout=10).status_code == 200
        assert server.stats()["requests"] == 0
        assert get(server, http).status_code == 503  # numbering restarted at 1
        server.reset_stats()
        assert server.stats() == {
            "requests": 0,
            "by_status": {},
            "faults": 0,
            "faults_by_kind": {},
            "records": 300,
        }
        assert_problem(admin.get(server.url + "/_sandbox/nope", timeout=10), 404)


def test_admin_config_over_http(http: requests.Session) -> None:
    with sandbox() as server:
        config_url = server.url + "/_sandbox/config"
        get(server, http)
        answer = requests.post(
            config_url,
            json={
                "bounds": "inclusive",
                "requests_per_minute": 100,
                "faults": {"at": {"2": "504"}, "rate": 0, "kinds": [], "seed": 1},
                "slow_seconds": 0.1,
                "redirect_url": "http://elsewhere.invalid",
            },
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        effective = requests.get(config_url, timeout=10).json()
        assert effective["bounds"] == "inclusive"
        assert effective["requests_per_minute"] == 100
        assert effective["faults"]["at"] == {"2": "504"}
        assert effective["redirect_url"] == "http://elsewhere.invalid"
        assert server.config.slow_seconds == 0.1
        assert get(server, http).status_code == 504  # request 2: numbering not reset

        requests.post(config_url, json={"faults": None}, timeout=10).raise_for_status()
        assert server.config.faults is None

        answer = requests.post(config_url, json={"seed": 5, "records": 50}, timeout=10)
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
        [1, 2],
    ],
)
def test_admin_config_rejects_bad_settings(body: Any) -> None:
    with sandbox() as server:
        before = server.records
        response = requests.post(server.url + "/_sandbox/config", json=body, timeout=10)
        assert_problem(response, 400)
        assert server.config.bounds == "exclusive"  # nothing applied
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
            server.url + "/_sandbox/config", json={"add_records": [late]}, timeout=10
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
    command = [sys.executable, "-m", "airflow_provider_lucca.sandbox", "--port", "0"]
    command += ["--port-file", str(port_file), "--records", "100", "--bounds", "inclusive"]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the sandbox did not write its port file"
            time.sleep(0.05)
        port = int(port_file.read_text())
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
    assert stdout.strip() == (
        f"Lucca sandbox listening on http://127.0.0.1:{port} (100 records, bounds=inclusive)"
    )
    assert stderr == ""


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
    ],
)
def test_cli_rejects_bad_flags(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert flag in capsys.readouterr().err
