"""Shared helpers of the client tests (no Airflow): a fake clock, a client, canned pages.

HTTP is mocked with ``responses``; the clock and sleep are injected (a fake clock whose ``sleep``
advances time), so every wait is asserted without sleeping. Test modules import the helpers
(``from tests.client.conftest import make_client``); ``rsps`` is a fixture.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import responses

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaClient,
    RetryPolicy,
)

BASE = "https://acme.ilucca.net"
URL = BASE + REALIZED_TRAININGS_PATH
KEY = "s3cr3t-lucca-api-key-7f3a9c"
CLIENT_LOGGER = "airflow_provider_lucca.client.client"


class FakeClock:
    """A monotonic clock that only moves when someone sleeps (or a test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(
    clock: FakeClock | None = None,
    *,
    rpm: float = 0,
    page_size: int = 100,
    retry: RetryPolicy | None = None,
    base_url: str = BASE,
    **config: Any,
) -> LuccaClient:
    clock = clock or FakeClock()
    cfg = ClientConfig(
        base_url=base_url,
        api_key=KEY,
        requests_per_minute=rpm,
        page_size=page_size,
        retry=retry or RetryPolicy(jitter=0.0),
        **config,
    )
    return LuccaClient(cfg, sleep=clock.sleep, clock=clock, rng=random.Random(1234))


def page_body(items: list[Any] | None = None, nxt: Any = None, count: Any = None) -> dict[str, Any]:
    return {"items": items if items is not None else [], "next": nxt, "count": count}


def query_of(call: Any) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(call.request.url).query, keep_blank_values=True)


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
