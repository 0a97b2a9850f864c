"""The request budget shared through Redis: slots spaced across processes, a 429 pausing every
sharer, and the hook wiring it from ``[lucca] budget_conn_id``; against a real redis-server."""

from __future__ import annotations

import itertools
import json
import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaAPIError,
    RequestPacer,
)
from airflow_provider_lucca.client.budget import SharedBudget, budget_key
from airflow_provider_lucca.client.errors import LuccaBudgetError, LuccaConfigError
from airflow_provider_lucca.client.pacing import interval_of
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, lucca_conn_json

ACCOUNT = "https://acme.ilucca.net"


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


def _reserve_slots(url: str, account: str, rpm: float, count: int, queue: Any) -> None:
    """Child process: take ``count`` slots of the account's budget, report them (Redis clock)."""
    budget = SharedBudget(redis.Redis.from_url(url), account, rpm)
    queue.put([budget.reserve()[1] for _ in range(count)])


@pytest.mark.slow
def test_slots_taken_by_several_processes_are_spaced_by_the_interval(
    redis_url: str, redis_client: redis.Redis
) -> None:
    spawn = multiprocessing.get_context("spawn")
    queue = spawn.Queue()
    children = [
        spawn.Process(target=_reserve_slots, args=(redis_url, ACCOUNT, 600, 40, queue))
        for _ in range(3)
    ]
    for child in children:
        child.start()
    slots = sorted(slot for _ in children for slot in queue.get(timeout=60))
    for child in children:
        child.join(timeout=30)
    assert len(slots) == 120
    interval = interval_of(600)
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    # Each slot is exactly one interval after the one before, whichever process took it.
    assert min(gaps) == pytest.approx(interval, abs=1e-5)
    assert max(gaps) == pytest.approx(interval, abs=1e-5)


def test_accounts_have_budgets_of_their_own(redis_client: redis.Redis) -> None:
    first = SharedBudget(redis_client, ACCOUNT, 60)
    other = SharedBudget(redis_client, "https://other.ilucca.net", 60)
    same = SharedBudget(redis_client, ACCOUNT + "/", 60)  # the same account, spelled otherwise
    now, slot = first.reserve()
    assert slot == pytest.approx(now, abs=0.01)
    now, slot = other.reserve()
    assert slot == pytest.approx(now, abs=0.01)  # not behind the first account's slot
    now, slot = same.reserve()
    assert slot - now == pytest.approx(interval_of(60), abs=0.05)
    # One account, however its URL is spelled: it has one budget.
    for spelling in (
        "HTTPS://ACME.ILUCCA.NET/",
        "https://acme.ilucca.net:443",
        "http://acme.ilucca.net",
        "http://acme.ilucca.net:80/",
    ):
        assert budget_key(spelling) == budget_key(ACCOUNT), spelling
    assert budget_key("https://acme.ilucca.net:8443") != budget_key(ACCOUNT)
    assert budget_key("https://acme.ilucca.net") != budget_key("https://acme2.ilucca.net")


def test_a_429_pauses_every_process_sharing_the_budget(redis_client: redis.Redis) -> None:
    waits: list[float] = []
    hit = SharedBudget(redis_client, ACCOUNT, 600)
    other = SharedBudget(redis_client, ACCOUNT, 600, sleep=waits.append)
    hit.hold(3.0)
    other.wait()
    assert len(waits) == 1
    assert waits[0] == pytest.approx(3.0, abs=0.1)
    # A pause never brings slots forward.
    hit.hold(0.5)
    _, slot = other.reserve()
    now, _ = hit.reserve()
    assert slot - now > 2.0


def test_a_429_also_pauses_slots_granted_before_it(redis_client: redis.Redis) -> None:
    """A process already sleeping towards its slot when another gets a 429 does not send at its
    slot: it sleeps out the pause, then takes a new slot."""
    hit = SharedBudget(redis_client, ACCOUNT, 60)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # no real sleep: Redis's clock barely moves
        waits.append(seconds)
        if len(waits) == 1:
            hit.hold(5.0)  # the 429 arrives while this process waits for its slot

    hit.reserve()  # the next slot is one interval away
    SharedBudget(redis_client, ACCOUNT, 60, sleep=sleep).wait()
    assert waits[0] == pytest.approx(interval_of(60), abs=0.1)
    assert waits[1] == pytest.approx(5.0, abs=0.1)  # then the pause, not a request
    assert len(waits) == 3  # and a new slot after it


@pytest.mark.slow
def test_a_429_that_ends_the_retries_still_pauses_the_others(
    redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process that gives up on a 429 (no retries left) pauses its sharers all the same."""
    import lucca_sandbox.ratelimit
    from airflow_provider_lucca.client import LuccaClient
    from airflow_provider_lucca.client.retry import RetryPolicy

    monkeypatch.setattr(lucca_sandbox.ratelimit, "_RATE_WINDOW", 20.0)
    with SandboxServer(SandboxConfig(records=10, requests_per_minute=1)) as sandbox:
        url = sandbox.url
        config = ClientConfig(
            base_url=sandbox.url,
            api_key=SANDBOX_KEY,
            requests_per_minute=600,
            allow_plain_http=True,
            retry=RetryPolicy(max_attempts=1),
        )
        budget = SharedBudget(redis_client, sandbox.url, 600)
        with LuccaClient(config, pacer=budget) as client:
            client.get_json(REALIZED_TRAININGS_PATH, {"limit": "1"})  # spends the window
            with pytest.raises(LuccaAPIError, match="HTTP 429"):
                client.get_json(REALIZED_TRAININGS_PATH, {"limit": "1"})
    other = SharedBudget(redis_client, url, 600)
    now, slot = other.reserve()
    assert slot - now > 10  # the sandbox's Retry-After (about 20 s), not the next 0.1 s slot


def test_the_key_expires_once_the_account_is_idle(redis_client: redis.Redis) -> None:
    SharedBudget(redis_client, ACCOUNT, 60).reserve()
    ttl = redis_client.pttl(budget_key(ACCOUNT))
    assert 0 < ttl <= (interval_of(60) + 60) * 1000 + 1


def test_an_unreachable_redis_stops_before_any_request(free_redis_url: str) -> None:
    budget = SharedBudget(
        redis.Redis.from_url(free_redis_url, socket_connect_timeout=2),
        ACCOUNT,
        50,
        where="redis://127.0.0.1 (connection 'lucca_budget')",
    )
    with pytest.raises(LuccaBudgetError, match=r"connection 'lucca_budget'.*no request was sent"):
        budget.wait()


@pytest.fixture
def free_redis_url() -> str:
    from tests.helpers import free_port

    return f"redis://127.0.0.1:{free_port()}"


# -- what a user sees: two workers extracting from one account at once


def _extract(url: str, redis_url: str | None, requests: int, queue: Any) -> None:
    """Child process: ``requests`` API calls to the account, paced alone or through the budget."""
    from airflow_provider_lucca.client import REALIZED_TRAININGS_PATH, LuccaClient
    from airflow_provider_lucca.client.retry import RetryPolicy

    config = ClientConfig(
        base_url=url,
        api_key=SANDBOX_KEY,
        requests_per_minute=RATE,
        allow_plain_http=True,
        retry=RetryPolicy(max_attempts=1),
    )
    pacer = SharedBudget(redis.Redis.from_url(redis_url), url, RATE) if redis_url else None
    refused = 0
    with LuccaClient(config, pacer=pacer) as client:
        for _ in range(requests):
            try:
                client.get_json(REALIZED_TRAININGS_PATH, {"limit": "1"})
            except LuccaAPIError as exc:  # the last failure, 429, after max_attempts=1
                if "HTTP 429" not in str(exc):
                    raise
                refused += 1
    queue.put(refused)


#: Budget of the account in the test: 60 requests/min, as 6 requests per 6 s (the sandbox's
#: window shrunk tenfold, so the test lasts seconds): a request a second, so a child kept off the
#: CPU for most of a second (a loaded CI machine) still arrives within its slot's spacing.
RATE = 60


@pytest.mark.slow
@pytest.mark.parametrize("shared", [True, False], ids=["shared-budget", "per-process"])
def test_two_processes_on_one_account_stay_within_its_limit_only_with_the_shared_budget(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, shared: bool
) -> None:
    import lucca_sandbox.ratelimit

    monkeypatch.setattr(lucca_sandbox.ratelimit, "_RATE_WINDOW", 6.0)
    with SandboxServer(SandboxConfig(records=50, requests_per_minute=RATE // 10)) as sandbox:
        spawn = multiprocessing.get_context("spawn")
        queue = spawn.Queue()
        children = [
            spawn.Process(
                target=_extract, args=(sandbox.url, redis_url if shared else None, 12, queue)
            )
            for _ in range(2)
        ]
        for child in children:
            child.start()
        refused = sum(queue.get(timeout=90) for _ in children)
        for child in children:
            child.join(timeout=30)
        statuses = sandbox.stats()["by_status"]
    if shared:
        assert refused == 0
        assert statuses == {"200": 24}
    else:
        # Each process alone keeps to the limit; together they exceed it.
        assert refused > 0
        assert statuses.get("429", 0) == refused


# -- the hook: [lucca] budget_conn_id


def test_the_hook_paces_through_redis_when_budget_conn_id_is_set(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(ACCOUNT, requests_per_minute=50)
    )
    hook = LuccaHook()
    assert isinstance(hook.client._pacer, RequestPacer)  # not configured: per process

    monkeypatch.setenv("AIRFLOW__LUCCA__BUDGET_CONN_ID", "lucca_budget")
    monkeypatch.setenv("AIRFLOW_CONN_LUCCA_BUDGET", redis_url + "/3")
    budget = LuccaHook().client._pacer
    assert isinstance(budget, SharedBudget)
    assert budget.key == budget_key(ACCOUNT)
    budget.reserve()
    assert redis.Redis.from_url(redis_url + "/3").exists(budget_key(ACCOUNT))


def test_a_budget_connection_with_a_bad_database_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    monkeypatch.setenv(
        "AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(ACCOUNT, requests_per_minute=50)
    )
    monkeypatch.setenv("AIRFLOW__LUCCA__BUDGET_CONN_ID", "lucca_budget")
    monkeypatch.setenv(
        "AIRFLOW_CONN_LUCCA_BUDGET",
        json.dumps({"conn_type": "redis", "host": "127.0.0.1", "extra": {"db": "one"}}),
    )
    with pytest.raises(LuccaConfigError, match=r"'lucca_budget'.*database 'one' is invalid"):
        _ = LuccaHook().client


@pytest.mark.slow
def test_an_extraction_with_redis_down_fails_before_any_request(
    free_redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    with SandboxServer(SandboxConfig(records=10)) as sandbox:
        monkeypatch.setenv(
            "AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(sandbox.url, requests_per_minute=50)
        )
        monkeypatch.setenv("AIRFLOW__LUCCA__BUDGET_CONN_ID", "lucca_budget")
        monkeypatch.setenv(
            "AIRFLOW_CONN_LUCCA_BUDGET",
            json.dumps(
                {
                    "conn_type": "redis",
                    "host": "127.0.0.1",
                    "password": "s3cret-redis",
                    "port": int(free_redis_url.rsplit(":", 1)[1]),
                }
            ),
        )
        with pytest.raises(LuccaBudgetError) as raised:
            LuccaHook().client.get_json(REALIZED_TRAININGS_PATH, {"limit": "1"})
        assert sandbox.stats()["requests"] == 0
    assert "s3cret-redis" not in str(raised.value)
    assert "connection 'lucca_budget'" in str(raised.value)
