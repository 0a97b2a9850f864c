"""Cases a red-team pass broke the reconciliation and the split reads with, kept as regressions.

Each one lost records, changed data silently or spent budget for nothing before its fix: a
history committed while Lucca was empty, the bounds probe on a day whose records were deleted, a
tenants' table whose filters were checked against another tenant's run, a null ``hasAttended``,
a record moving across a seam under the inclusive reading, and a big tenant whose months all
time out.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import LuccaConfigError, RetryPolicy
from airflow_provider_lucca.client.defaults import TIMEOUTS_BEFORE_SPLIT
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.reconcile import (
    ReconcileRequest,
    ReconcileSummary,
    reconcile_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import FaultSchedule, SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, client_for, read_dataset, tree

LOG = logging.getLogger("tests.reconcile_attacks")
ONE_DAY = timedelta(days=1)
FAST = RetryPolicy(max_attempts=6, backoff_base=0.001, backoff_max=0.002, jitter=0.0)


def window_of(config: SandboxConfig) -> DateWindow:
    return DateWindow(config.start, config.end + ONE_DAY)


def replace_records(server: SandboxServer, records: list[dict[str, Any]]) -> None:
    """Lucca's data becomes exactly ``records``."""
    server.configure(delete_ids=[r["id"] for r in server.records], add_records=records)


def extract(server: SandboxServer, out: Any, window: DateWindow, **request: Any) -> None:
    with client_for(server.url, api_key=SANDBOX_KEY, retry=FAST) as client:
        extract_realized_trainings(
            client, ExtractionRequest(window=window, **request), out, log=LOG
        )


def reconcile(server: SandboxServer, out: Any, **request: Any) -> ReconcileSummary:
    with client_for(server.url, api_key=SANDBOX_KEY, retry=FAST) as client:
        return reconcile_realized_trainings(client, ReconcileRequest(**request), out, log=LOG)


def day_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["sessionEndsOn"] for r in records))


def stored_counts(root: Path) -> dict[str, int]:
    return {day: len(rows) for day, rows in read_dataset(root).items() if rows}


def test_a_history_committed_while_lucca_was_empty_gets_a_later_import(tmp_path: Path) -> None:
    """Every committed day is empty, so no month tells how Lucca reads the bounds (inclusive
    here) and no committed day can be probed: the day probed is one Lucca holds records on."""
    config = SandboxConfig(
        records=150, start=date(2024, 1, 1), end=date(2024, 3, 31), bounds="inclusive"
    )
    out = ObjectStoragePath((tmp_path / "ds").as_uri())
    with SandboxServer(config) as server:
        imported = [dict(r, sessionEndsOn="2024-02-15") for r in server.records]
        replace_records(server, [])
        extract(server, out, window_of(config))
        replace_records(server, imported)  # a CSV import of one training, 150 employees
        summary = reconcile(server, out)
        again = reconcile(server, out)

    assert summary["date_bounds"] == "inclusive"
    assert [change["day"] for change in summary["changed_days"]] == ["2024-02-15"]
    assert stored_counts(tmp_path / "ds") == {"2024-02-15": 150}
    assert again["changed_days"] == []


def test_records_deleted_on_the_busiest_committed_day_are_found(tmp_path: Path) -> None:
    """Two months (no month can tell the reading, inclusive here); every record of the busiest
    committed day is deleted: a probe of that day would answer 0, as the exclusive reading."""
    config = SandboxConfig(
        records=120, start=date(2024, 1, 1), end=date(2024, 2, 29), bounds="inclusive"
    )
    out = ObjectStoragePath((tmp_path / "ds").as_uri())
    with SandboxServer(config) as server:
        extract(server, out, window_of(config))
        busiest = max(sorted(day_counts(server.records).items()), key=lambda item: item[1])[0]
        server.mutate(delete_ids=[r["id"] for r in server.records if r["sessionEndsOn"] == busiest])
        summary = reconcile(server, out)
        truth = day_counts(server.records)

    assert summary["date_bounds"] == "inclusive"
    assert [change["day"] for change in summary["changed_days"]] == [busiest]
    assert stored_counts(tmp_path / "ds") == truth


@pytest.mark.slow
def test_a_tenants_table_checks_the_filters_of_that_tenants_own_runs(tmp_path: Path) -> None:
    """acme is extracted with owner_ids (an account's employees), globex without, last."""
    from airflow_provider_lucca.extraction.sinks.delta import DeltaSink

    config = SandboxConfig(records=400, start=date(2024, 1, 1), end=date(2024, 3, 31))
    root = str(tmp_path / "table")
    with (
        SandboxServer(config) as acme,
        SandboxServer(SandboxConfig(**{**vars(config), "seed": 7})) as globex,
    ):
        owners = tuple(sorted({r["ownerId"] for r in acme.records})[:20])
        extract(acme, DeltaSink(root, tenant="acme"), window_of(config), owner_ids=owners)
        extract(globex, DeltaSink(root, tenant="globex"), window_of(config))
        before = tree(tmp_path)
        acme.reset_stats()
        summary = reconcile(acme, DeltaSink(root, tenant="acme"), owner_ids=owners)
        assert summary["changed_days"] == []
        made = acme.stats()["requests"]
        with pytest.raises(LuccaConfigError, match="owner_ids"):
            reconcile(acme, DeltaSink(root, tenant="acme"))
        assert acme.stats()["requests"] == made  # refused before any request
    assert tree(tmp_path) == before


def test_a_null_has_attended_does_not_make_a_day_differ_forever(tmp_path: Path) -> None:
    """A day of more than a page (read by counts only) holds a record whose ``hasAttended`` is
    null: the committed attended count and Lucca's must agree whatever Lucca makes of it."""
    config = SandboxConfig(records=300, start=date(2024, 1, 1), end=date(2024, 3, 31))
    out = ObjectStoragePath((tmp_path / "ds").as_uri())
    with SandboxServer(config) as server:
        records = [dict(r) for r in server.records]
        for record in records[100:220]:  # a company-wide training: 120 records on one day
            record["sessionEndsOn"] = "2024-02-16"
        records[100]["hasAttended"] = None
        replace_records(server, records)
        extract(server, out, window_of(config))
        before = tree(tmp_path)
        server.reset_stats()
        summary = reconcile(server, out)

    assert summary["changed_days"] == []
    assert summary["requests"] == 2 * 3 + 2  # three months, the bounds asked (no month tells)
    assert tree(tmp_path) == before


def test_a_record_moving_across_a_seam_is_kept_under_the_inclusive_reading(
    tmp_path: Path,
) -> None:
    """Each half's request also serves its neighbour's edge day (and counts it): a record of
    the second half's first day that moves into the first half after the first half was read is
    in neither half's records and changes no count; the seam records' check catches it."""
    window = DateWindow(date(2025, 1, 1), date(2025, 1, 9))
    second = window.halves()[1]
    config = SandboxConfig(
        records=110, start=date(2025, 1, 1), end=date(2025, 1, 8), bounds="inclusive"
    )
    with SandboxServer(config) as server:
        assert sum(r["sessionEndsOn"] <= "2025-01-05" for r in server.records) <= 100
        mover = next(r for r in server.records if r["sessionEndsOn"] == second.start.isoformat())
        timeouts = FaultSchedule(at=dict.fromkeys(range(1, TIMEOUTS_BEFORE_SPLIT + 1), "408"))
        server.configure(
            faults=timeouts.to_dict(),
            # the first half's only page is the request after the timeouts
            moves=[
                {"id": mover["id"], "to": "2025-01-02", "after_request": TIMEOUTS_BEFORE_SPLIT + 1}
            ],
        )
        extract(server, ObjectStoragePath((tmp_path / "ds").as_uri()), window)
        truth = {r["id"]: r["sessionEndsOn"] for r in server.records}

    got = {r["id"]: day for day, rows in read_dataset(tmp_path / "ds").items() for r in rows}
    assert got == truth
    assert got[mover["id"]] == "2025-01-02"


def test_a_tenant_whose_months_time_out_counts_halves_without_timing_out_again(
    tmp_path: Path,
) -> None:
    """Lucca answers 408 to windows over 17 days: after the first month's timeouts, every month
    is counted by halves at once (two halves, two figures), not after timeouts of its own."""
    config = SandboxConfig(records=1200, start=date(2024, 1, 1), end=date(2024, 12, 31))
    out = ObjectStoragePath((tmp_path / "ds").as_uri())
    with SandboxServer(config) as server:
        extract(server, out, window_of(config))
        server.configure(timeout_window_days=17)
        server.reset_stats()
        summary = reconcile(server, out)
        statuses = Counter(entry["status"] for entry in server.request_log()["requests"])

    assert summary["changed_days"] == []
    assert statuses[408] == TIMEOUTS_BEFORE_SPLIT
    # 12 months of 2 halves and 2 figures, the first timeouts, and the bounds asked (2).
    assert summary["requests"] == 4 * 12 + TIMEOUTS_BEFORE_SPLIT + 2


def test_a_parquet_dataset_reconciled_as_jsonl_is_refused_before_any_request(
    tmp_path: Path,
) -> None:
    """The default file_format is jsonl: a re-extraction would write .jsonl.gz parts into a
    parquet dataset."""
    config = SandboxConfig(records=300, start=date(2024, 1, 1), end=date(2024, 3, 31))
    out = ObjectStoragePath((tmp_path / "ds").as_uri())
    with SandboxServer(config) as server:
        extract(server, out, window_of(config), file_format="parquet")
        server.mutate(seed=1, deletions=1)
        before = tree(tmp_path)
        server.reset_stats()
        with pytest.raises(LuccaConfigError, match="file_format='parquet'"):
            reconcile(server, out)
        assert server.stats()["requests"] == 0
        summary = reconcile(server, out, file_format="parquet")
    assert len(summary["changed_days"]) == 1
    assert all(path.endswith(".parquet") for path in tree(tmp_path) if "part-" in path)
    assert tree(tmp_path) != before
