"""A tenant's request budget shared by every process on every worker, kept in Redis.

A :class:`~airflow_provider_lucca.client.pacing.RequestPacer` spaces the requests of one process.
Several processes extracting from the same Lucca account at once (a backfill's parallel runs, the
scheduled run beside a history load, tasks on different Celery workers) would each spend the
whole budget. :class:`SharedBudget` hands out the same evenly spaced slots, but from one Redis
key per account: a Lua script reads Redis's own clock, takes the next free slot and moves it one
interval on, atomically. Slots are therefore spaced by the interval whichever process takes them,
and the clocks of the workers never matter (each waits for the difference Redis computed).

A process that dies after taking a slot only wastes it; the key expires a minute after the last
slot, so an idle account leaves nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from airflow_provider_lucca.client.errors import LuccaBudgetError
from airflow_provider_lucca.client.pacing import interval_of

__all__ = ["KEY_PREFIX", "SharedBudget", "budget_key"]

#: Redis keys of the budgets: ``lucca:budget:<account URL>``.
KEY_PREFIX = "lucca:budget:"

# KEYS[1] the account's key; ARGV[1] the interval between slots (s); ARGV[2] a pause to hold (s,
# 0 for a slot). Returns Redis's clock and the slot (or the end of the pause), as strings: Lua
# numbers would come back truncated to integers.
_TAKE_SLOT = """
local interval = tonumber(ARGV[1])
local pause = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot, nxt
if pause > 0 then
  slot = now
  nxt = math.max(free, now + pause)
else
  slot = math.max(now, free)
  nxt = slot + interval
end
local ttl = math.ceil((nxt - now + 60) * 1000)
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', ttl)
return {string.format('%.6f', now), string.format('%.6f', slot)}
"""


def budget_key(base_url: str) -> str:
    """The Redis key of an account's budget: every connection to the same account URL shares it,
    whatever its name, since Lucca counts requests per account."""
    return KEY_PREFIX + base_url.rstrip("/").lower()


class SharedBudget:
    """Request slots of one Lucca account, shared through Redis by every process that uses it.

    :param redis: a ``redis.Redis`` client (``redis`` package), already configured.
    :param base_url: the account URL; the budget's key derives from it.
    :param requests_per_minute: the account's budget; every process using the key must agree on
        it (give the account's connections the same ``requests_per_minute``).
    :param where: how to name the Redis server in errors (never with its password).
    """

    def __init__(
        self,
        redis: Any,
        base_url: str,
        requests_per_minute: float,
        *,
        where: str = "Redis",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.key = budget_key(base_url)
        self.interval = interval_of(requests_per_minute)
        self._where = where
        self._sleep = sleep
        self._script = redis.register_script(_TAKE_SLOT)

    def wait(self) -> float:
        if self.interval == 0.0:
            return 0.0
        now, slot = self.reserve()
        waited = slot - now
        if waited > 0:
            self._sleep(waited)
        return max(waited, 0.0)

    def hold(self, seconds: float) -> None:
        if self.interval == 0.0 or seconds <= 0:
            return
        self._call(seconds)

    def reserve(self) -> tuple[float, float]:
        """Take the next slot without waiting for it: ``(now, slot)``, both on Redis's clock."""
        return self._call(0.0)

    def _call(self, pause: float) -> tuple[float, float]:
        try:
            now, slot = self._script(keys=[self.key], args=[repr(self.interval), repr(pause)])
        except Exception as exc:  # redis.RedisError and socket errors: redis is an optional import
            raise LuccaBudgetError(
                f"The shared request budget at {self._where} is unavailable "
                f"({type(exc).__name__}: {exc}); no request was sent without it."
            ) from None
        return float(now), float(slot)
