"""What a run changed, as the ``extra`` of its outlet Asset's event (README "Asset events"):
small enough for the metadata database, which hands it to every run it triggers, and free of
paths, filter values and keys."""

from __future__ import annotations

from typing import Any

from airflow_provider_lucca.extraction.realized_trainings import ExtractionSummary
from airflow_provider_lucca.extraction.reconcile import ReconcileSummary

#: Day by day (``partitions``) up to this many days (a quarter, about 2 KB of JSON); beyond,
#: ``months`` alone (always there) says what a run wrote: the 1,096 days of a three-year history
#: would take 21 KB day by day, its 36 months 1.6 KB. Asset events are kept in the metadata
#: database and handed to every run they trigger: they stay small.
MAX_DAYS_IN_EVENT = 92


def days_and_months(partitions: dict[str, int]) -> dict[str, Any]:
    """``partitions`` (ISO day -> records) as an asset event holds them: ``months`` (``YYYY-MM``
    -> days written and their records), ``days`` (how many), and the days themselves while they
    are at most :data:`MAX_DAYS_IN_EVENT` (else None)."""
    months: dict[str, dict[str, int]] = {}
    for day, records in sorted(partitions.items()):
        month = months.setdefault(day[:7], {"days": 0, "records": 0})
        month["days"] += 1
        month["records"] += records
    listed = len(partitions) <= MAX_DAYS_IN_EVENT
    return {
        "days": len(partitions),
        "partitions": dict(sorted(partitions.items())) if listed else None,
        "months": months,
    }


def extraction_event_extra(summary: ExtractionSummary) -> dict[str, Any]:
    """The asset event's ``extra`` of an extraction: its windows, the days it replaced with their
    records, its run token, format, tenant and table version. No path (the asset is the
    dataset), no key, no filter values: nothing a reader of events should not see."""
    return {
        "operation": "extract",
        "run_token": summary["run_token"],
        "tenant": summary["tenant"],
        "file_format": summary["file_format"],
        "window": dict(summary["window"]),
        "extracted_window": dict(summary["extracted_window"]),
        **days_and_months(summary["partitions"]),
        "records": summary["records"],
        "table_version": summary["table_version"],
    }


def reconcile_event_extra(summary: ReconcileSummary) -> dict[str, Any]:
    """The asset event's ``extra`` of a reconciliation: the days it rewrote (``changed_days``,
    empty when nothing changed, so a downstream DAG can skip), as windows (``re_extracted``) and
    with their records now, by day and by month as an extraction's event has them."""
    rewritten = {
        change["day"]: change["records_now"] or 0
        for change in summary["changed_days"]
        if change["records_now"] is not None
    }
    detail = days_and_months(rewritten)
    # Past MAX_DAYS_IN_EVENT the days (and their windows) are left to ``months``, as an
    # extraction's event does: a reconciliation that rewrote half of three years stays ~2 KB.
    listed = detail["partitions"] is not None
    return {
        "operation": "reconcile",
        "tenant": summary["tenant"],
        "file_format": summary["file_format"],
        "window": None if summary["window"] is None else dict(summary["window"]),
        "changed_days": sorted(rewritten) if listed else None,
        "re_extracted": (
            [dict(window) for window in summary["re_extracted"]]
            if listed and len(summary["re_extracted"]) <= MAX_DAYS_IN_EVENT
            else None
        ),
        **detail,
        "records": summary["records_rewritten"],
        "table_versions": list(summary["table_versions"]),
    }
