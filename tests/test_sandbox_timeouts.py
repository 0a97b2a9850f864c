"""The sandbox's 408 "send a simpler request", Lucca's answer to a request running over 5 s.

Windows that split themselves on 408 are proven against this option, so it must refuse exactly
the requests it says (a window wider than N days or missing a bound, filters matching more than
M records), count-only probes included, answer the rest, wait the configured delay first, and
sit where Lucca's would: after authentication and the rate limit, in the request log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from lucca_sandbox import API_PATH, SandboxConfig, SandboxServer
from lucca_sandbox.__main__ import build_parser, main
from lucca_sandbox.process import SandboxProcess
from tests.helpers import SANDBOX_KEY

RECORDS = 300
COUNT_ONLY = {"fields.root": "count", "limit": 0}


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = f"lucca application={SANDBOX_KEY}"
        yield session


def sandbox(**overrides: Any) -> SandboxServer:
    overrides.setdefault("records", RECORDS)
    return SandboxServer(SandboxConfig(**overrides))


def window(after: str | None, before: str | None, **extra: Any) -> dict[str, Any]:
    params = dict(extra)
    if after is not None:
        params["sessionEndOnAfter"] = after
    if before is not None:
        params["sessionEndOnBefore"] = before
    return params


def get(url: str, http: requests.Session, params: dict[str, Any]) -> requests.Response:
    return http.get(url + API_PATH, params=params, timeout=30)


def assert_simpler_request(response: requests.Response) -> None:
    assert response.status_code == 408, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 408
    assert problem["title"] == "Request Timeout"
    assert "send a simpler request" in problem["detail"]
    assert "narrower" in problem["detail"]


def admin_headers(server: SandboxServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.admin_token}"}


# --------------------------------------------------------------------------- the window


@pytest.mark.parametrize("bounds", ["exclusive", "inclusive"])
@pytest.mark.parametrize("count_only", [False, True], ids=["page", "count-only"])
def test_a_window_wider_than_n_days_gets_408(
    http: requests.Session, bounds: str, count_only: bool
) -> None:
    extra = COUNT_ONLY if count_only else {}
    with sandbox(timeout_window_days=31, bounds=bounds) as server:
        # (before - after).days: 2025-02-28..2025-04-01 is 32 days wide, whatever the bounds.
        wide = get(server.url, http, window("2025-02-28", "2025-04-01", **extra))
        assert_simpler_request(wide)
        assert "32 days wide, more than 31" in wide.json()["detail"]
        exact = get(server.url, http, window("2025-03-01", "2025-04-01", **extra))
        assert exact.status_code == 200, exact.text  # exactly N days wide: answered
        narrow = get(server.url, http, window("2025-03-10", "2025-03-11", **extra))
        assert narrow.status_code == 200
        if count_only:
            assert exact.json() == {"items": [], "count": exact.json()["count"]}
            assert exact.json()["count"] > 0


@pytest.mark.parametrize(
    ("after", "before"),
    [(None, "2025-03-01"), ("2025-03-01", None), (None, None)],
    ids=["no-after", "no-before", "no-bounds"],
)
def test_a_missing_bound_is_too_wide(
    http: requests.Session, after: str | None, before: str | None
) -> None:
    with sandbox(timeout_window_days=10_000) as server:
        for extra in ({}, COUNT_ONLY):
            response = get(server.url, http, window(after, before, **extra))
            assert_simpler_request(response)
            assert "needs both bounds" in response.json()["detail"]


def test_a_window_of_zero_days_and_an_inverted_one_are_answered(http: requests.Session) -> None:
    with sandbox(timeout_window_days=0, bounds="inclusive") as server:
        day = server.records[0]["sessionEndsOn"]
        one_day = get(server.url, http, window(day, day, **COUNT_ONLY))
        assert one_day.status_code == 200
        assert one_day.json()["count"] >= 1
        assert get(server.url, http, window("2025-05-02", "2025-05-01")).status_code == 200
        assert_simpler_request(get(server.url, http, window("2025-05-01", "2025-05-02")))


# --------------------------------------------------------------------------- matching records


def test_filters_matching_more_than_m_records_get_408(http: requests.Session) -> None:
    with sandbox() as server:
        params = window("2025-01-01", "2025-07-01")
        matching = get(server.url, http, {**params, **COUNT_ONLY}).json()["count"]
        assert 0 < matching < RECORDS
        server.configure(timeout_records=matching)  # exactly M: answered
        for extra in ({}, COUNT_ONLY, {"fields.root": "next", "limit": 100}):
            assert get(server.url, http, {**params, **extra}).status_code == 200
        everything = get(server.url, http, COUNT_ONLY)
        assert_simpler_request(everything)
        assert f"match {RECORDS} records, more than {matching}" in everything.json()["detail"]
        server.configure(timeout_records=matching - 1)
        for extra in ({}, COUNT_ONLY):
            assert_simpler_request(get(server.url, http, {**params, **extra}))
        # A narrower request of the same window passes: more filters match fewer records.
        owner = server.records[0]["ownerId"]
        assert get(server.url, http, {**params, "ownerIds": owner}).status_code == 200
        server.configure(timeout_records=None)
        assert get(server.url, http, COUNT_ONLY).json()["count"] == RECORDS


def test_both_thresholds_apply_together(http: requests.Session) -> None:
    with sandbox(timeout_window_days=200, timeout_records=5) as server:
        assert_simpler_request(get(server.url, http, window("2025-01-01", "2025-12-31")))
        big = get(server.url, http, window("2025-01-01", "2025-03-01"))
        assert_simpler_request(big)
        assert "more than 5" in big.json()["detail"]
        assert get(server.url, http, window("2025-01-01", "2025-01-03")).status_code == 200


# --------------------------------------------------------------------------- the delay


def test_the_408_waits_the_delay_and_other_answers_do_not(http: requests.Session) -> None:
    delay = 0.4
    with sandbox(timeout_window_days=31, timeout_delay_seconds=delay) as server:
        started = time.monotonic()
        assert_simpler_request(get(server.url, http, window("2025-01-01", "2025-06-01")))
        waited = time.monotonic() - started
        assert delay <= waited < delay + 5.0
        started = time.monotonic()
        assert get(server.url, http, window("2025-01-01", "2025-01-15")).status_code == 200
        assert time.monotonic() - started < delay


def test_a_408_in_its_delay_holds_back_no_other_request(http: requests.Session) -> None:
    """Other requests (another tenant's task, the other half of a split window) are served
    while a 408 waits out its delay."""
    delay = 0.8
    with sandbox(timeout_window_days=31, timeout_delay_seconds=delay) as server:
        done: list[int] = []

        def heavy() -> None:
            with requests.Session() as session:
                session.headers.update(http.headers)
                done.append(get(server.url, session, window(None, None)).status_code)

        thread = threading.Thread(target=heavy)
        thread.start()
        try:
            deadline = time.monotonic() + 10
            while server.stats()["requests"] < 1:  # the heavy request has arrived
                assert time.monotonic() < deadline, "the heavy request never arrived"
                time.sleep(0.005)
            assert get(server.url, http, window("2025-01-01", "2025-01-15")).status_code == 200
            assert done == []  # answered while the 408 was still waiting
        finally:
            thread.join(timeout=30)
        assert done == [408]


# --------------------------------------------------------------------------- where it sits


def test_authentication_and_validation_come_first(http: requests.Session) -> None:
    with sandbox(timeout_window_days=1, timeout_records=0) as server:
        anonymous = requests.get(server.api_url, timeout=10)
        assert anonymous.status_code == 401
        assert get(server.url, http, {"limit": 500}).status_code == 400
        assert get(server.url, http, {"sessionEndOnAfter": "2025-02-30"}).status_code == 400
        assert_simpler_request(get(server.url, http, {}))


def test_a_408_counts_against_the_rate_limit_and_in_the_log(http: requests.Session) -> None:
    with sandbox(timeout_window_days=31, requests_per_minute=3) as server:
        statuses = [get(server.url, http, window(None, None)).status_code for _ in range(3)]
        assert statuses == [408, 408, 408]
        limited = get(server.url, http, window("2025-01-01", "2025-01-02"))
        assert limited.status_code == 429  # the three 408s spent the minute's budget
        log = server.request_log()["requests"]
        assert [entry["status"] for entry in log] == [408, 408, 408, 429]
        assert server.stats()["by_status"] == {"408": 3, "429": 1}


# --------------------------------------------------------------------------- settings


def test_runtime_settings_over_http(http: requests.Session) -> None:
    with sandbox() as server:
        config_url = server.url + "/_sandbox/config"
        shown = requests.get(config_url, timeout=10).json()
        assert (
            shown["timeout_window_days"],
            shown["timeout_records"],
            shown["timeout_delay_seconds"],
        ) == (None, None, 0.0)
        assert get(server.url, http, {}).status_code == 200
        body = {"timeout_window_days": 7, "timeout_records": 50, "timeout_delay_seconds": 0.05}
        answer = requests.post(config_url, json=body, headers=admin_headers(server), timeout=10)
        assert answer.status_code == 200, answer.text
        assert {key: answer.json()[key] for key in body} == body
        assert {key: requests.get(config_url, timeout=10).json()[key] for key in body} == body
        assert_simpler_request(get(server.url, http, {}))
        off = {"timeout_window_days": None, "timeout_records": None}
        requests.post(config_url, json=off, headers=admin_headers(server), timeout=10)
        assert get(server.url, http, {}).status_code == 200
        assert server.config.timeout_delay_seconds == 0.05


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"timeout_window_days": -1}', "timeout_window_days"),
        (b'{"timeout_window_days": "31"}', "timeout_window_days"),
        (b'{"timeout_window_days": 1.5}', "timeout_window_days"),
        (b'{"timeout_records": true}', "timeout_records"),
        (b'{"timeout_delay_seconds": -0.5}', "timeout_delay_seconds"),
        (b'{"timeout_delay_seconds": null}', "timeout_delay_seconds"),
        (b'{"timeout_delay_seconds": NaN}', "timeout_delay_seconds"),
        (b'{"timeout_delay_seconds": Infinity}', "timeout_delay_seconds"),
        (b'{"timeout_records": 5, "timeout_delay_seconds": "1"}', "timeout_delay_seconds"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(body: bytes, named: str) -> None:
    with sandbox() as server:
        response = requests.post(
            server.url + "/_sandbox/config",
            data=body,
            headers={**admin_headers(server), "Content-Type": "application/json"},
            timeout=10,
        )
        assert response.status_code == 400, response.text
        assert named in response.json()["detail"]
        config = server.config
        assert (
            config.timeout_window_days,
            config.timeout_records,
            config.timeout_delay_seconds,
        ) == (None, None, 0.0)


def test_the_config_validates_the_settings() -> None:
    for kwargs in (
        {"timeout_window_days": -3},
        {"timeout_records": "many"},
        {"timeout_delay_seconds": -1},
    ):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            SandboxConfig(**kwargs)


def test_the_cli_parses_the_flags() -> None:
    args = build_parser().parse_args(
        ["--timeout-window-days", "31", "--timeout-records", "5000", "--timeout-delay", "5"]
    )
    assert (args.timeout_window_days, args.timeout_records, args.timeout_delay) == (31, 5000, 5.0)
    defaults = build_parser().parse_args([])
    assert (defaults.timeout_window_days, defaults.timeout_records, defaults.timeout_delay) == (
        None,
        None,
        0.0,
    )


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--timeout-window-days", "-1"], "--timeout-window-days"),
        (["--timeout-window-days", "a month"], "--timeout-window-days"),
        (["--timeout-records", "1e3"], "--timeout-records"),
        (["--timeout-delay", "-2"], "--timeout-delay"),
        (["--timeout-delay", "soon"], "--timeout-delay"),
    ],
)
def test_the_cli_refuses_bad_flags(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        main(argv)
    assert excinfo.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


def test_a_sandbox_process_takes_the_flags(http: requests.Session) -> None:
    flags = ["--timeout-window-days", "31", "--timeout-records", "100", "--timeout-delay", "0.2"]
    with SandboxProcess(["--records", str(RECORDS), *flags]) as process:
        shown = process.admin("config")
        assert (
            shown["timeout_window_days"],
            shown["timeout_records"],
            shown["timeout_delay_seconds"],
        ) == (31, 100, 0.2)
        started = time.monotonic()
        assert_simpler_request(get(process.url, http, window("2025-01-01", "2025-03-01")))
        assert time.monotonic() - started >= 0.2
        assert get(process.url, http, window("2025-01-01", "2025-01-31")).status_code == 200
        process.admin("config", {"timeout_window_days": None, "timeout_records": None})
        assert get(process.url, http, {}).status_code == 200
