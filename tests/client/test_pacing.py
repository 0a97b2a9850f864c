"""RequestPacer, alone, shared by threads, and in the client."""

from __future__ import annotations

import threading
import time

import pytest
import responses

from airflow_provider_lucca.client import RequestPacer
from tests.client.conftest import URL, FakeClock, make_client, page_body


def test_pacer_spaces_requests_evenly() -> None:
    clock = FakeClock()
    pacer = RequestPacer(60, clock=clock, sleep=clock.sleep)

    waits = [pacer.wait() for _ in range(4)]

    assert waits == pytest.approx([0.0, 1.01, 1.01, 1.01])
    assert clock.sleeps == pytest.approx([1.01, 1.01, 1.01])
    assert clock.now - 1000.0 == pytest.approx(3.03)


def test_pacer_counts_time_spent_between_calls() -> None:
    clock = FakeClock()
    pacer = RequestPacer(60, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 0.5  # the request itself took half a second
    assert pacer.wait() == pytest.approx(0.51)
    clock.now += 5.0  # idle for a while
    assert pacer.wait() == 0.0
    # no burst credit saved up while idle: the next call is spaced again
    assert pacer.wait() == pytest.approx(1.01)


def test_lucca_default_budget_gives_one_request_per_1_2_seconds() -> None:
    clock = FakeClock()
    pacer = RequestPacer(50, clock=clock, sleep=clock.sleep)
    for _ in range(51):
        pacer.wait()
    # 51 requests never fit in one 60 s window
    assert clock.now - 1000.0 > 60.0


@pytest.mark.parametrize("rpm", [0, -1])
def test_pacing_zero_disables_it(rpm: float) -> None:
    clock = FakeClock()
    pacer = RequestPacer(rpm, clock=clock, sleep=clock.sleep)
    assert [pacer.wait() for _ in range(100)] == [0.0] * 100
    assert clock.sleeps == []


def test_pacer_hands_out_distinct_slots_to_concurrent_threads() -> None:
    """Threads sharing a pacer share one budget: no two get the same slot, even under races."""

    class RacyTime(float):
        """A frozen time whose comparisons yield the CPU: the pacer compares it with the slot
        it has just read, so without a lock another thread would read the same slot."""

        def __lt__(self, other: object) -> bool:
            time.sleep(0.0002)
            return float(self) < float(other)  # type: ignore[arg-type]

        def __gt__(self, other: object) -> bool:
            time.sleep(0.0002)
            return float(self) > float(other)  # type: ignore[arg-type]

    start = RacyTime(50.0)
    pacer = RequestPacer(60, clock=lambda: start, sleep=lambda s: None)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            waited = pacer.wait()
            with lock:
                waits.append(waited)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(waits) == pytest.approx([k * 1.01 for k in range(40)])


def test_pacer_shared_by_threads_in_real_time() -> None:
    pacer = RequestPacer(1200)  # 0.0505 s per request
    calls = 12
    began = time.monotonic()
    threads = [
        threading.Thread(target=lambda: [pacer.wait() for _ in range(calls // 4)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    assert (calls - 1) * pacer.interval <= elapsed < 2 * calls * pacer.interval + 0.5


def test_client_paces_successive_pages(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json=page_body([{"id": 2}], nxt="c2"))
    rsps.get(URL, json=page_body([{"id": 3}]))
    clock = FakeClock()
    client = make_client(clock, rpm=60)

    list(client.iter_realized_trainings())

    assert clock.sleeps == pytest.approx([1.01, 1.01])
    assert client.stats.pacing_wait_seconds == pytest.approx(2.02)
