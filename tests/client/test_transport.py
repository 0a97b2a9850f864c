"""What every request carries and how answers are read: headers, proxies, timeouts, size limits,
the session, the stats."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client import LuccaResponseError
from tests.client.conftest import KEY, URL, FakeClock, make_client, page_body


def test_requests_carry_lucca_auth_and_a_user_agent(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    list(make_client().iter_realized_trainings())
    headers = rsps.calls[0].request.headers
    assert headers["Authorization"] == f"lucca application={KEY}"
    assert f"airflow-provider-lucca/{__version__}" in headers["User-Agent"]
    assert headers["Accept"] == "application/json"


def test_netrc_cannot_replace_the_key_and_https_proxies_are_honoured(
    rsps: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine acme.ilucca.net login someone password other\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    rsps.get(URL, json=page_body())
    list(make_client().iter_realized_trainings())
    call = rsps.calls[0]
    assert call.request.headers["Authorization"] == f"lucca application={KEY}"
    # A corporate egress proxy is used (CONNECT tunnel: the key stays inside TLS).
    assert call.request.req_kwargs["proxies"]["https"] == "http://proxy.example:3128"


def test_no_proxy_and_the_plain_http_sandbox_bypass_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "acme.ilucca.net")
    assert make_client().session.proxies == {}
    assert make_client(base_url="http://127.0.0.1:8089").session.proxies == {}


@pytest.mark.parametrize(("timeout", "expected"), [(30.0, (10.0, 30.0)), (4.0, (4.0, 4.0))])
def test_every_request_has_connect_and_read_timeouts(
    rsps: responses.RequestsMock, timeout: float, expected: tuple[float, float]
) -> None:
    rsps.get(URL, json=page_body())
    list(make_client(timeout=timeout).iter_realized_trainings())
    assert rsps.calls[0].request.req_kwargs["timeout"] == expected


def test_get_json_refuses_a_full_url_as_path(rsps: responses.RequestsMock) -> None:
    with pytest.raises(ValueError, match="path must be a path"):
        make_client().get_json("https://evil.example/x", [])
    with pytest.raises(ValueError, match="path must be a path"):
        make_client().get_json("talent-training/api/v2/realized-trainings", [])
    assert len(rsps.calls) == 0


@pytest.mark.parametrize("declare_length", [True, False])
def test_body_larger_than_the_limit_is_refused(
    rsps: responses.RequestsMock, declare_length: bool
) -> None:
    big = '{"items": [], "pad": "' + "x" * 5000 + '"}'
    rsps.get(URL, body=big, auto_calculate_content_length=declare_length)
    rsps.get(URL, json=page_body())

    with pytest.raises(LuccaResponseError, match="1024") as info:
        list(make_client(max_response_bytes=1024).iter_realized_trainings())

    assert "refusing to read it" in str(info.value)
    if declare_length:  # refused from the headers, before reading any of the body
        assert "announces 5" in str(info.value)
    assert len(rsps.calls) == 1


def test_body_at_the_limit_is_accepted(rsps: responses.RequestsMock) -> None:
    body = '{"items": [], "next": null}'
    rsps.get(URL, body=body, auto_calculate_content_length=True)
    pages = list(make_client(max_response_bytes=len(body)).iter_realized_trainings())
    assert pages[0].items == []


def test_stats_count_requests_retries_statuses_and_waits(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, status=429, headers={"Retry-After": "2"})
    rsps.get(URL, status=503)
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json=page_body([{"id": 2}]))
    clock = FakeClock()
    client = make_client(clock, rpm=60)

    list(client.iter_realized_trainings())

    stats = client.stats
    assert stats.requests == 4
    assert stats.retries == 2
    assert stats.statuses == {429: 1, 503: 1, 200: 2}
    # waits: Retry-After 2 s, then backoff(2) = 2 s; the page-2 request is paced by 1.01 s
    assert stats.retry_wait_seconds == pytest.approx(4.0)
    assert stats.pacing_wait_seconds == pytest.approx(1.01)
    assert sum(clock.sleeps) == pytest.approx(stats.retry_wait_seconds + stats.pacing_wait_seconds)


def test_client_is_a_context_manager_closing_its_session() -> None:
    client = make_client()
    closed: list[bool] = []
    client.session.close = lambda: closed.append(True)  # type: ignore[method-assign]
    with client as entered:
        assert entered is client
    assert closed == [True]
