"""The client's metrics, without Airflow: every event counted once, as the server saw it.

A real sandbox answers with scheduled faults; the client reports to a recording
:class:`~airflow_provider_lucca.client.metrics.Metrics`, and the counts are compared with the
sandbox's own request log. Waits go through a fake clock, so the 429's one-second Retry-After
is asserted without being waited.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_lucca.client import (
    NO_METRICS,
    ClientConfig,
    LuccaAuthError,
    LuccaClient,
    LuccaRetriesExhaustedError,
    RetryPolicy,
)
from airflow_provider_lucca.client.metrics import COUNTERS, TIMERS, account_label
from lucca_sandbox import FaultSchedule, SandboxConfig, SandboxServer
from tests.client.conftest import FakeClock
from tests.helpers import SANDBOX_KEY

#: Retries without real waits (the fake clock's sleep), enough attempts for two faults in a row.
RETRY = RetryPolicy(max_attempts=4, backoff_base=0.5, jitter=0.0, rate_limit_min_wait=10.0)


class Recorder:
    """A Metrics that keeps what it is told."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.timings: defaultdict[str, list[float]] = defaultdict(list)

    def incr(self, name: str, count: int = 1) -> None:
        assert name in COUNTERS, name
        self.counts[name] += count

    def timing(self, name: str, seconds: float) -> None:
        assert name in TIMERS, name
        self.timings[name].append(seconds)


def client(url: str, recorder: Recorder, clock: FakeClock, **config: Any) -> LuccaClient:
    settings: dict[str, Any] = {
        "api_key": SANDBOX_KEY,
        "requests_per_minute": 0,
        "page_size": 100,
        "retry": RETRY,
        **config,
    }
    return LuccaClient(
        ClientConfig(base_url=url, **settings),
        sleep=clock.sleep,
        clock=clock,
        rng=random.Random(1),
        metrics=recorder,
    )


@pytest.fixture
def faulty() -> Iterator[SandboxServer]:
    """1,000 records (10 pages); a 429, two 5xx in a row, a 408 and a dropped connection."""
    faults = FaultSchedule(at={2: "429", 4: "503", 5: "502", 7: "408", 9: "drop"})
    with SandboxServer(SandboxConfig(records=1000, faults=faults)) as server:
        yield server


def statuses(server: SandboxServer) -> list[int | None]:
    return [entry["status"] for entry in server.request_log()["requests"]]


def test_each_attempt_is_counted_by_what_it_got_as_the_server_logged_it(
    faulty: SandboxServer,
) -> None:
    recorder, clock = Recorder(), FakeClock()
    with client(faulty.url, recorder, clock) as lucca:
        records = sum(len(page.items) for page in lucca.iter_realized_trainings())

    assert records == 1000
    got = statuses(faulty)
    failures = [status for status in got if status != 200]
    assert recorder.counts == {
        "requests": len(got),
        "retries": len(failures),
        "rate_limited": got.count(429),
        "server_errors": got.count(503) + got.count(502),
        "timeouts": got.count(408),
        "transport_errors": got.count(None),
    }
    assert len(got) == 15  # 10 pages, each fault retried once
    assert len(failures) == 5
    # One wait per retry, as slept: the 429's Retry-After (1 s), then backoffs of 0.5, 1, 0.5, 0.5.
    assert recorder.timings["retry_wait"] == clock.sleeps == [1.0, 0.5, 1.0, 0.5, 0.5]
    assert "pacing_wait" not in recorder.timings  # unpaced: no wait is reported


def test_pacing_waits_are_timed_per_request(faulty: SandboxServer) -> None:
    recorder, clock = Recorder(), FakeClock()
    with client(faulty.url, recorder, clock, requests_per_minute=600) as lucca:
        list(lucca.iter_realized_trainings())

    paced = recorder.timings["pacing_wait"]
    # Every request but the first waits for its slot; after a retry wait longer than the
    # interval, the next slot is already free.
    assert len(paced) == len(statuses(faulty)) - 1 - len(recorder.timings["retry_wait"])
    assert all(0 < wait <= 60 / 600 * 1.01 + 1e-9 for wait in paced)
    assert sum(paced) + sum(recorder.timings["retry_wait"]) == pytest.approx(sum(clock.sleeps))
    assert sum(paced) == pytest.approx(lucca.stats.pacing_wait_seconds)


def test_a_request_that_fails_for_good_is_counted_once_as_given_up() -> None:
    faults = FaultSchedule(at={1: "503", 2: "503"})
    with SandboxServer(SandboxConfig(records=10, faults=faults)) as server:
        recorder, clock = Recorder(), FakeClock()
        quick = RetryPolicy(max_attempts=2, backoff_base=0.1, jitter=0.0)
        lucca = client(server.url, recorder, clock, retry=quick)
        with lucca, pytest.raises(LuccaRetriesExhaustedError):
            lucca.check()
        assert statuses(server) == [503, 503]
    assert recorder.counts == {"requests": 2, "server_errors": 2, "retries": 1, "gave_up": 1}


def test_a_refused_key_is_counted_as_refused_and_given_up_without_retry() -> None:
    with SandboxServer(SandboxConfig(records=10)) as server:
        recorder, clock = Recorder(), FakeClock()
        lucca = client(server.url, recorder, clock, api_key="not-the-key")
        with lucca, pytest.raises(LuccaAuthError):
            lucca.check()
        assert statuses(server) == [401]
    assert recorder.counts == {"requests": 1, "refused": 1, "gave_up": 1}
    assert not recorder.timings


def test_a_client_without_metrics_reports_nowhere() -> None:
    lucca = LuccaClient(ClientConfig(base_url="https://acme.ilucca.net", api_key="k"))
    assert lucca.metrics is NO_METRICS


@pytest.mark.parametrize(
    ("url", "label"),
    [
        ("https://acme.ilucca.net", "acme_ilucca_net"),
        ("https://ACME.ilucca-demo.net", "acme_ilucca_demo_net"),
        ("http://127.0.0.1:8089", "127_0_0_1_8089"),
        ("http://[::1]:8089", "1_8089"),
        ("https://" + "a" * 63 + ".ilucca.net", "a" * 60),
    ],
)
def test_the_account_label_is_one_safe_name_segment(url: str, label: str) -> None:
    config = ClientConfig(base_url=url, api_key="k", allow_plain_http=True)
    assert account_label(config.base_url) == label
