"""The example daily DAG on the distributed engine: a backfill on CeleryExecutor + PostgreSQL +
Redis runs to success on both workers and commits its days.

A smoke test of the deployment the fleet tests build on, with as few assumptions about the DAG
as possible: its id, ``lucca_default``, and partitions named ``session_end_on=<day>`` with a
``_manifest.json`` somewhere under ``LUCCA_OUTPUT_PATH``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest
from distributed_stack import DistributedStack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

DAG_ID = "lucca_realized_trainings_daily"
# Three Paris days; each bound is that day's Paris midnight with its offset (both included).
DAYS = [date(2025, 3, 10) + timedelta(days=n) for n in range(3)]
FROM_DATE, TO_DATE = "2025-03-10T00:00:00+01:00", "2025-03-12T00:00:00+01:00"
BACKFILL_TIMEOUT = 240.0


# Stack start (bounded by 150 s) + DAG parsing + the backfill (bounded by BACKFILL_TIMEOUT).
@pytest.mark.timeout(600)
def test_backfill_runs_on_both_celery_workers(
    distributed_stack: DistributedStack, sandbox_day_count: Callable[[date], int]
) -> None:
    stack = distributed_stack
    started = time.monotonic()
    stack.wait_for_dags(DAG_ID)
    stack.unpause(DAG_ID)
    backfill = stack.backfill(DAG_ID, FROM_DATE, TO_DATE)
    failure = ""
    try:
        runs = stack.wait_for_backfill(backfill["id"], timeout=BACKFILL_TIMEOUT)
    except (RuntimeError, TimeoutError) as exc:
        failure = str(exc)
    if failure:
        logs = stack.log_tails(40, ("scheduler", *(worker.name for worker in stack.workers)))
        pytest.fail(f"{failure}\n{logs}", pytrace=False)
    print(f"\nBackfill of {len(DAYS)} days done in {time.monotonic() - started:.0f} s")

    # One run per day, all successful.
    assert [run["state"] for run in runs] == ["success"] * len(DAYS), runs

    # Each day is committed with the sandbox's records of that day.
    root = Path(urlparse(stack.env["LUCCA_OUTPUT_PATH"]).path)
    for day in DAYS:
        manifests = sorted(root.rglob(f"session_end_on={day.isoformat()}/_manifest.json"))
        assert manifests, f"{day}: no committed partition under {root}"
        for manifest in manifests:
            assert json.loads(manifest.read_text())["record_count"] == sandbox_day_count(day), (
                manifest
            )

    # Both workers ran task instances of these runs, and no task ran anywhere else.
    rows = stack.sql(
        "SELECT hostname FROM task_instance WHERE dag_id = %s AND run_id = ANY(%s)",
        (DAG_ID, [run["dag_run_id"] for run in runs]),
    )
    per_host = Counter(hostname for (hostname,) in rows)
    assert set(per_host) == {worker.hostname for worker in stack.workers}, per_host
