"""The sandbox's request log and the window count that turns it into a rate proof.

Multi-tenant tests prove from the sandbox's side that no tenant got more requests in any minute
than its limit, and that tenants were read at the same time. That proof is only as good as the
log (every API request, in arrival order, with the status it got and when it arrived, nothing
secret) and as the window count (the sandbox limiter's own window, boundaries included).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

import lucca_sandbox.ratelimit
import lucca_sandbox.requestlog
from lucca_sandbox import API_PATH, FaultSchedule, RateLimiter, SandboxConfig, SandboxServer
from lucca_sandbox.process import SandboxProcess
from lucca_sandbox.requestlog import MAX_TEXT, RequestLog
from tests.helpers import max_requests_in_any_window, sandbox_request_log

#: A key that cannot be mistaken for anything else in a log.
KEY = "tenant-alpha-secret-key-7f3a9c"


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"lucca application={KEY}"
        yield session


def server(**overrides: Any) -> SandboxServer:
    overrides.setdefault("records", 50)
    return SandboxServer(SandboxConfig(api_key=KEY, **overrides))


def get(server: SandboxServer, session: requests.Session, query: str = "") -> requests.Response:
    url = server.api_url + (f"?{query}" if query else "")
    return session.get(url, timeout=10, allow_redirects=False)


def admin_headers(server: SandboxServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


# --------------------------------------------------------------------------- the window count


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([], 0),
        ([5.0], 1),
        ([0.0, 60.0], 1),  # exactly a window apart: never in the same window
        ([0.0, 59.999], 2),
        ([0.0, 30.0, 60.0], 2),  # (0, 60] holds 30 and 60; (-30, 30] holds 0 and 30
        ([0.0, 30.0, 59.9999], 3),
        ([0.1, 60.1], 1),  # 60.1 - 60 rounds above 0.1 in floats: still apart, as the limiter says
        ([7.0, 7.0, 7.0], 3),
        ([60.0, 0.0, 30.0, 59.5], 3),  # any order
        ([0.0, 10.0, 20.0, 70.0, 75.0, 79.0, 80.0], 4),  # (20, 80] holds 70, 75, 79, 80
    ],
)
def test_max_requests_in_any_window(times: list[float], expected: int) -> None:
    assert max_requests_in_any_window(times) == expected


def test_window_length_is_a_parameter() -> None:
    times = [0.0, 5.0, 10.0]
    assert max_requests_in_any_window(times, window=10.0) == 2
    assert max_requests_in_any_window(times, window=10.001) == 3
    assert max_requests_in_any_window(times, window=1.0) == 1
    for window in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="window"):
            max_requests_in_any_window(times, window=window)


# Times on a whole-second grid (so ties at exactly one window apart are frequent) and anywhere.
_TIMES = st.lists(
    st.one_of(
        st.integers(0, 240).map(float),
        st.builds(lambda base, k: base + 60.0 * k, st.floats(0, 60), st.integers(0, 3)),
        st.floats(0, 240, allow_nan=False),
    ),
    max_size=40,
)


@given(times=_TIMES, limit=st.integers(1, 6))
def test_the_limiter_admits_everything_exactly_when_no_window_exceeds_its_limit(
    times: list[float], limit: int
) -> None:
    """Same windows as the sandbox's RateLimiter, boundaries and float rounding included."""
    now = [0.0]
    limiter = RateLimiter(limit, clock=lambda: now[0])
    admitted_all = True
    for at in sorted(times):
        now[0] = at
        if limiter.admit() is not None:
            admitted_all = False
            break
    assert admitted_all == (max_requests_in_any_window(times) <= limit)


@given(times=st.lists(st.integers(0, 30).map(float), max_size=30), limit=st.integers(1, 4))
def test_the_window_parameter_matches_a_shrunk_limiter_window(
    times: list[float], limit: int
) -> None:
    """Tests shrink the limiter's window (``_RATE_WINDOW``) to speed time up; so can the count."""
    original = lucca_sandbox.ratelimit._RATE_WINDOW
    lucca_sandbox.ratelimit._RATE_WINDOW = 6.0  # hypothesis runs examples without fixtures
    try:
        now = [0.0]
        limiter = RateLimiter(limit, clock=lambda: now[0])
        admitted = []
        for at in sorted(times):
            now[0] = at
            admitted.append(limiter.admit() is None)
    finally:
        lucca_sandbox.ratelimit._RATE_WINDOW = original
    assert all(admitted) == (max_requests_in_any_window(times, window=6.0) <= limit)


# --------------------------------------------------------------------------- the log, over HTTP


def test_every_api_request_is_logged_with_its_arrival_status_path_and_query(
    http: requests.Session,
) -> None:
    with server(requests_per_minute=3) as sandbox:
        before = time.time()
        statuses = [get(sandbox, http, f"limit={n}").status_code for n in range(1, 6)]
        missing = http.get(sandbox.url + "/talent-training/api/v2/nope?x=1", timeout=10)
        unauthenticated = requests.get(sandbox.api_url + "?limit=9", timeout=10)
        # Admin requests are not API requests: none of these is logged.
        assert requests.get(sandbox.url + "/_sandbox/health", timeout=10).status_code == 200
        assert requests.get(sandbox.url + "/_sandbox/stats", timeout=10).status_code == 200
        response = requests.get(sandbox.url + "/_sandbox/requests", timeout=10)  # no token
        after = time.time()

    assert statuses == [200, 200, 200, 429, 429]
    assert (missing.status_code, unauthenticated.status_code) == (429, 429)  # still limited
    assert response.status_code == 200
    payload = response.json()
    assert payload["dropped"] == 0
    log = payload["requests"]
    assert [(entry["status"], entry["path"], entry["query"]) for entry in log] == [
        (200, API_PATH, "limit=1"),
        (200, API_PATH, "limit=2"),
        (200, API_PATH, "limit=3"),
        (429, API_PATH, "limit=4"),
        (429, API_PATH, "limit=5"),
        (429, "/talent-training/api/v2/nope", "x=1"),
        (429, API_PATH, "limit=9"),
    ]
    times = [entry["at"] for entry in log]
    assert times == sorted(times)
    assert before <= times[0]  # wall-clock seconds, as time.time()
    assert times[-1] <= after
    assert all(set(entry) == {"at", "status", "path", "query"} for entry in log)
    # The same requests as the counters, status by status.
    assert (
        Counter(str(entry["status"]) for entry in log)
        == Counter({"200": 3, "429": 4})
        == Counter(sandbox.stats()["by_status"])
    )
    # The key travels in a header: not in the log, whatever the encoding.
    assert KEY not in response.text
    assert KEY not in json.dumps(sandbox.request_log())


def test_statuses_include_injected_faults_and_dropped_connections(http: requests.Session) -> None:
    faults = FaultSchedule(at={1: "503", 2: "drop", 3: "429", 4: "html"})
    with server(faults=faults) as sandbox:
        assert get(sandbox, http).status_code == 503
        with pytest.raises(requests.ConnectionError):
            get(sandbox, http, "limit=2")
        assert get(sandbox, http).status_code == 429
        assert get(sandbox, http).status_code == 200  # the html fault's 200
        assert get(sandbox, http, "limit=1").status_code == 200
        log = sandbox_request_log(sandbox.url)
    # A dropped connection got no answer: null, but it arrived and counts.
    assert [(entry["status"], entry["query"]) for entry in log] == [
        (503, ""),
        (None, "limit=2"),
        (429, ""),
        (200, ""),
        (200, "limit=1"),
    ]


@pytest.mark.slow
def test_the_log_is_in_arrival_order_when_answers_come_out_of_order(
    http: requests.Session,
) -> None:
    """A slow first request answers after a quick second one; the log keeps arrival order."""
    with server(faults=FaultSchedule(at={1: "slow"}), slow_seconds=1.0) as sandbox:
        slow: list[int] = []

        def slow_request() -> None:
            with requests.Session() as session:
                session.headers.update(http.headers)
                slow.append(get(sandbox, session, "limit=1").status_code)

        first = threading.Thread(target=slow_request)
        first.start()
        try:
            deadline = time.monotonic() + 10
            while sandbox.stats()["requests"] < 1:  # request 1 has arrived and is being slowed
                assert time.monotonic() < deadline, "the slow request never arrived"
                time.sleep(0.005)
            assert get(sandbox, http, "limit=2").status_code == 200
            assert sandbox.request_log()["requests"][0]["query"] == "limit=2"  # 1 still running
        finally:
            first.join(timeout=10)
        log = sandbox.request_log()["requests"]
    assert slow == [200]
    assert [entry["query"] for entry in log] == ["limit=1", "limit=2"]
    assert log[0]["at"] < log[1]["at"]  # when it arrived, not when it was answered


def test_reset_stats_clears_the_log_and_needs_the_admin_token(http: requests.Session) -> None:
    with server() as sandbox:
        for _ in range(3):
            assert get(sandbox, http).status_code == 200
        refused = requests.post(sandbox.url + "/_sandbox/reset-stats", timeout=10)
        assert refused.status_code == 401
        assert len(sandbox_request_log(sandbox.url)) == 3  # unchanged
        reset = requests.post(
            sandbox.url + "/_sandbox/reset-stats", headers=admin_headers(sandbox), timeout=10
        )
        assert reset.status_code == 200
        assert sandbox.request_log() == {"requests": [], "dropped": 0}
        assert get(sandbox, http, "limit=7").status_code == 200
        log = sandbox_request_log(sandbox.url, admin_token=sandbox.admin_token)
        assert [entry["query"] for entry in log] == ["limit=7"]
        sandbox.reset_stats()  # in process: same effect
        assert sandbox_request_log(sandbox.url) == []


def test_the_log_keeps_the_last_entries_and_counts_the_dropped_ones(
    http: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lucca_sandbox.requestlog, "CAPACITY", 3)
    with server() as sandbox:
        for n in range(1, 6):
            assert get(sandbox, http, f"limit={n}").status_code == 200
        payload = requests.get(sandbox.url + "/_sandbox/requests", timeout=10).json()
        assert [entry["query"] for entry in payload["requests"]] == [
            "limit=3",
            "limit=4",
            "limit=5",
        ]
        assert payload["dropped"] == 2
        with pytest.raises(AssertionError, match="dropped 2"):
            sandbox_request_log(sandbox.url)  # a proof over part of the requests is refused
        sandbox.reset_stats()
        assert sandbox.request_log() == {"requests": [], "dropped": 0}


def test_long_paths_and_queries_are_cut(http: requests.Session) -> None:
    with server() as sandbox:
        query = "ownerIds=" + "&ownerIds=".join(str(n) for n in range(1000, 3000))
        assert len(query) > MAX_TEXT
        assert get(sandbox, http, query).status_code == 200
        (entry,) = sandbox_request_log(sandbox.url)
    assert len(entry["query"]) == MAX_TEXT
    assert entry["query"] == query[: MAX_TEXT - 3] + "..."


def test_request_log_unit_bounds_and_order() -> None:
    log = RequestLog(capacity=2)
    first, second, third = log.arrive(), log.arrive(), log.arrive()
    assert first[1] <= second[1] <= third[1]
    log.record(third, 200, "/c", "")  # answered first
    log.record(first, 429, "/a", "")
    log.record(second, None, "/b", "q=1")  # full: the first one filed (third) is dropped
    payload = log.snapshot()
    assert [entry["path"] for entry in payload["requests"]] == ["/a", "/b"]  # arrival order
    assert payload["dropped"] == 1
    log.clear()
    assert log.snapshot() == {"requests": [], "dropped": 0}
    with pytest.raises(ValueError, match="capacity"):
        RequestLog(capacity=0)


@pytest.mark.slow
def test_a_sandbox_process_serves_its_log_in_wall_clock_time(tmp_path: Path) -> None:
    """What multi-process tests read: the log of a sandbox in its own process, comparable with
    the test's own clock (and with other sandboxes' logs)."""
    key = "process-key-0a1b2c3d"
    args = ["--records", "50", "--requests-per-minute", "2", "--api-key", key]
    with SandboxProcess(args, log_path=str(tmp_path / "sandbox.log")) as process:
        before = time.time()
        with requests.Session() as session:
            session.headers["Authorization"] = f"lucca application={key}"
            statuses = [
                session.get(process.url + API_PATH, params={"limit": n}, timeout=10).status_code
                for n in (1, 2, 3)
            ]
        after = time.time()
        payload = process.request_log()
        log = sandbox_request_log(process.url, admin_token=process.admin_token)
    assert statuses == [200, 200, 429]
    assert payload == {"requests": log, "dropped": 0}
    assert [(entry["status"], entry["query"]) for entry in log] == [
        (200, "limit=1"),
        (200, "limit=2"),
        (429, "limit=3"),
    ]
    assert before <= log[0]["at"] <= log[-1]["at"] <= after
    assert key not in json.dumps(payload)
    # Two requests were admitted in one minute, at the limit; three arrived.
    assert max_requests_in_any_window([e["at"] for e in log if e["status"] == 200]) == 2
    assert max_requests_in_any_window([e["at"] for e in log]) == 3
