"""The Redis behind the shared request budgets, from Airflow's configuration and a connection.

``[lucca] budget_conn_id`` (``AIRFLOW__LUCCA__BUDGET_CONN_ID``) names a Redis connection; when it
is set, every Lucca client of every task takes its request slots from that Redis
(:class:`~airflow_provider_lucca.client.budget.SharedBudget`), so the budget of one Lucca account
holds across processes and workers. It is a deployment setting, not a DAG one: every DAG that
reads an account (daily, history, reconciliation) must share its budget, whoever wrote them.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook, conf

from airflow_provider_lucca.client.budget import SharedBudget
from airflow_provider_lucca.client.errors import LuccaConfigError

__all__ = ["BUDGET_CONN_OPTION", "budget_conn_id", "shared_budget"]

#: ``(section, key)`` of the setting in airflow.cfg.
BUDGET_CONN_OPTION = ("lucca", "budget_conn_id")
#: Seconds to connect to / hear from Redis before the task fails (it never paces alone).
REDIS_TIMEOUT = 10.0


def budget_conn_id() -> str | None:
    """The configured Redis connection id, or None when budgets are per process."""
    value = conf.get(*BUDGET_CONN_OPTION, fallback="") or ""
    return value.strip() or None


def shared_budget(base_url: str, requests_per_minute: float) -> SharedBudget | None:
    """The account's shared budget, or None when ``[lucca] budget_conn_id`` is not set."""
    conn_id = budget_conn_id()
    if conn_id is None or requests_per_minute <= 0:
        return None
    redis, where = _redis_client(conn_id)
    return SharedBudget(redis, base_url, requests_per_minute, where=where)


def _redis_client(conn_id: str) -> tuple[Any, str]:
    """A ``redis.Redis`` from a connection (``redis://[:password@]host:port/db``, or the Redis
    provider's form: ``db`` and ``ssl`` in the extra), and how to name it in errors."""
    try:
        import redis
    except ImportError:
        raise LuccaConfigError(
            f"[lucca] budget_conn_id={conn_id!r} needs the redis package: install "
            "airflow-provider-lucca[redis]."
        ) from None
    conn = BaseHook.get_connection(conn_id)
    extra = conn.extra_dejson
    raw_db = extra.get("db", conn.schema or 0)
    try:
        db = int(raw_db)
        if db < 0:
            raise ValueError
    except (TypeError, ValueError):
        raise LuccaConfigError(
            f"Connection {conn_id!r} ([lucca] budget_conn_id): the Redis database "
            f"{raw_db!r} is invalid, expected an integer >= 0 (schema or extra 'db')."
        ) from None
    host = conn.host or "localhost"
    port = conn.port or 6379
    where = f"redis://{host}:{port}/{db} (connection {conn_id!r})"
    client = redis.Redis(
        host=host,
        port=port,
        db=db,
        username=conn.login or None,
        password=conn.password or None,
        ssl=str(extra.get("ssl", "")).strip().lower() in ("1", "true", "yes"),
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
    )
    return client, where
