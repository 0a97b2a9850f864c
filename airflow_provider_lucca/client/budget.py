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
from urllib.parse import urlsplit

from airflow_provider_lucca.client.errors import LuccaBudgetError
from airflow_provider_lucca.client.pacing import interval_of

__all__ = ["KEY_PREFIX", "SharedBudget", "budget_key"]

#: Redis keys of the budgets: ``lucca:budget:{<host>[:<port>]}`` for the slots and the same with
#: ``:pause`` for the end of the latest 429's pause (one hash slot: a Redis Cluster takes both).
KEY_PREFIX = "lucca:budget:"
_DEFAULT_PORTS = {"http": 80, "https": 443}

# KEYS[1] the account's next free slot, KEYS[2] the end of its pause. ARGV[1] the operation:
# "take" a slot, "hold" a pause of ARGV[3] seconds, or "check" the pause; ARGV[2] the interval
# between slots (s). Returns Redis's clock and the slot (take, hold) or the pause's end (check), as
# strings: Lua numbers would come back truncated to integers.
_SCRIPT = """
local function fmt(value) return string.format('%.6f', value) end
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[1] == 'check' then
  return {fmt(now), fmt(paused)}
end
local slot, nxt
if ARGV[1] == 'hold' then
  slot = now
  paused = math.max(paused, now + tonumber(ARGV[3]))
  nxt = math.max(free, paused)
  redis.call('SET', KEYS[2], fmt(paused), 'PX', math.ceil((paused - now + 60) * 1000))
else
  slot = math.max(now, free, paused)
  nxt = slot + tonumber(ARGV[2])
end
redis.call('SET', KEYS[1], fmt(nxt), 'PX', math.ceil((nxt - now + 60) * 1000))
return {fmt(now), fmt(slot)}
"""


def budget_key(base_url: str) -> str:
    """The Redis key of an account's budget. Lucca counts requests per account, so every
    connection to the same host shares it, however its URL is spelled: case, a trailing slash,
    the scheme's default port written out, http or https."""
    parts = urlsplit(base_url.strip().lower())
    host = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = host if port in (None, _DEFAULT_PORTS.get(parts.scheme)) else f"{host}:{port}"
    return KEY_PREFIX + "{" + netloc + "}"


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
        self.pause_key = self.key + ":pause"
        self.interval = interval_of(requests_per_minute)
        self._where = where
        self._sleep = sleep
        self._script = redis.register_script(_SCRIPT)

    def wait(self) -> float:
        """Sleep until this process's next slot; if a 429 paused the account meanwhile (the slot
        was granted before the pause), sleep out the pause and take a new slot."""
        if self.interval == 0.0:
            return 0.0
        waited = 0.0
        while True:
            now, slot = self.reserve()
            if slot > now:
                self._sleep(slot - now)
                waited += slot - now
            now, paused = self._call("check")
            if paused <= slot:  # no pause, or one that ended before this slot
                return waited
            if paused > now:
                self._sleep(paused - now)
                waited += paused - now

    def hold(self, seconds: float) -> None:
        if self.interval == 0.0 or seconds <= 0:
            return
        self._call("hold", seconds)

    def reserve(self) -> tuple[float, float]:
        """Take the next slot without waiting for it: ``(now, slot)``, both on Redis's clock."""
        return self._call("take")

    def _call(self, operation: str, pause: float = 0.0) -> tuple[float, float]:
        try:
            now, slot = self._script(
                keys=[self.key, self.pause_key],
                args=[operation, repr(self.interval), repr(pause)],
            )
        except Exception as exc:  # redis.RedisError and socket errors: redis is an optional import
            raise LuccaBudgetError(
                f"The shared request budget at {self._where} is unavailable "
                f"({type(exc).__name__}: {exc}); no request was sent without it."
            ) from None
        return float(now), float(slot)
