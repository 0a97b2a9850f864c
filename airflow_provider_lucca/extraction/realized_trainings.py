"""Extract realized trainings for a date window into committed daily partitions."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client import LuccaClient, LuccaResponseError
from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.commit import (
    StagedPartition,
    commit_partitions,
    describe_local_file,
)
from airflow_provider_lucca.extraction.formats import PartFormat, get_format
from airflow_provider_lucca.extraction.spool import DaySpooler
from airflow_provider_lucca.extraction.window import DateWindow

DATASET = "lucca.realized_trainings"
PROGRESS_LOG_SECONDS = 1.0


@dataclass(frozen=True)
class ExtractionRequest:
    """What to extract: a window, the days before it to refresh, the API filters, the format.

    :param window: ``[start, end)`` on ``sessionEndsOn``.
    :param lookback_days: also re-extract that many days before ``window.start`` (late CSV imports).
    :param fail_on_count_mismatch: fail when the records received differ from the API's ``count``
        (False only warns).
    """

    window: DateWindow
    lookback_days: int = 0
    owner_ids: tuple[int, ...] | None = None
    has_attended: bool | None = None
    training_ids: tuple[int, ...] | None = None
    file_format: str = "jsonl"
    fail_on_count_mismatch: bool = True

    @property
    def extracted_window(self) -> DateWindow:
        return self.window.with_lookback(self.lookback_days)

    def filters(self) -> dict[str, Any]:
        return {
            "owner_ids": list(self.owner_ids) if self.owner_ids else None,
            "has_attended": self.has_attended,
            "training_ids": list(self.training_ids) if self.training_ids else None,
        }


def extract_realized_trainings(
    client: LuccaClient,
    request: ExtractionRequest,
    output: Any,
    *,
    log: Logger,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Stream the window from Lucca, stage daily part files locally, then commit every day.

    Nothing is written to ``output`` until every page has arrived, the days are staged and the
    count of distinct records checks out, so a failed extraction never replaces a committed
    partition.

    :param output: an ``ObjectStoragePath`` (or anything with its interface): the dataset root.
    :return: a small summary for XCom (never the records).
    """
    started = time.monotonic()
    part_format = get_format(request.file_format)
    extracted = request.extracted_window
    after, before = extracted.request_bounds
    pages = client.iter_realized_trainings(
        owner_ids=request.owner_ids,
        has_attended=request.has_attended,
        training_ids=request.training_ids,
        session_end_on_after=after,
        session_end_on_before=before,
    )
    requests_before, retries_before = client.stats.requests, client.stats.retries
    token = uuid.uuid4().hex[:12]
    with tempfile.TemporaryDirectory(prefix="lucca-extract-") as workdir:
        spooler = DaySpooler(extracted, workdir)
        reported = _spool_pages(pages, spooler, log, started)
        spooler.flush()
        staged = [_stage_day(spooler, day, part_format, workdir, token) for day in extracted.days()]
        duplicates = spooler.stats.outside_duplicates + sum(p.duplicates for p in staged)
        _check_count(
            reported, spooler.stats.received, duplicates, request.fail_on_count_mismatch, log
        )
        extracted_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest_fields = {
            "dataset": DATASET,
            "file_format": part_format.name,
            "window": {
                "from": extracted.start.isoformat(),
                "until": extracted.end.isoformat(),
                "requested_from": request.window.start.isoformat(),
                "lookback_days": request.lookback_days,
            },
            "filters": request.filters(),
            "api": {"reported_count": reported, "received": spooler.stats.received},
            "run": {"token": token, "run_id": run_id, "extracted_at": extracted_at},
            "provider_version": __version__,
        }
        commit_partitions(output, staged, manifest_fields)

    written = sum(partition.records for partition in staged)
    summary = {
        "output_path": str(output),
        "file_format": part_format.name,
        "window": {
            "from": request.window.start.isoformat(),
            "until": request.window.end.isoformat(),
        },
        "extracted_window": {
            "from": extracted.start.isoformat(),
            "until": extracted.end.isoformat(),
        },
        "partitions": {partition.day.isoformat(): partition.records for partition in staged},
        "records": written,
        "received": spooler.stats.received,
        "reported_count": reported,
        "outside_window": spooler.stats.outside_window,
        "duplicates_dropped": sum(partition.duplicates for partition in staged),
        "requests": client.stats.requests - requests_before,
        "retries": client.stats.retries - retries_before,
        "duration_seconds": round(time.monotonic() - started, 3),
        "run_token": token,
    }
    log.info(
        "Committed %d records in %d daily partitions %s to %s (%d requests, %d retries, %.1f s)",
        written,
        len(staged),
        extracted,
        output,
        summary["requests"],
        summary["retries"],
        summary["duration_seconds"],
    )
    return summary


def _spool_pages(
    pages: Iterator[Any], spooler: DaySpooler, log: Logger, started: float
) -> int | None:
    """Spool every page; return the count the server reported (the same on every page)."""
    reported: int | None = None
    last_log = 0.0
    for page in pages:
        if page.number == 1:
            reported = page.count
        elif page.count != reported:
            raise LuccaResponseError(
                f"The reported count changed during the extraction ({reported} on page 1, "
                f"{page.count} on page {page.number}): the data changed while paging; re-run."
            )
        spooler.add(page.items)
        now = time.monotonic()
        if page.next_cursor is None or now - last_log >= PROGRESS_LOG_SECONDS:
            last_log = now
            received = spooler.stats.received
            of = f"/{reported}" if reported is not None else ""
            rate = received / max(now - started, 1e-6)
            log.info(
                "Page %d: %d%s records received (%.0f records/s)", page.number, received, of, rate
            )
    return reported


def _check_count(
    reported: int | None, received: int, duplicates: int, strict: bool, log: Logger
) -> None:
    """Distinct records received must equal the API's count.

    Distinct, not received: when a record moves while paging, a page boundary repeats one record
    and skips another, and the raw number of items still matches the count.
    """
    if reported is None:
        log.warning("Lucca did not report a count: completeness of %d records unchecked", received)
        return
    distinct = received - duplicates
    if reported == distinct:
        return
    message = (
        f"Received {distinct} records"
        + (f" ({received} items, {duplicates} of them repeated)" if duplicates else "")
        + f" but Lucca reported count={reported} for the request"
    )
    if strict:
        raise LuccaResponseError(
            f"{message}: the extraction is incomplete or inconsistent, nothing was committed "
            "(fail_on_count_mismatch=False would only warn)."
        )
    log.warning("%s; committing anyway because fail_on_count_mismatch=False.", message)


def _stage_day(
    spooler: DaySpooler, day: Any, part_format: PartFormat, workdir: str, token: str
) -> StagedPartition:
    seen: set[bytes] = set()
    duplicates = 0

    def unique() -> Iterator[list[bytes]]:
        # Batches of spool lines, deduplicated on the id prefix, for one write per batch.
        nonlocal duplicates
        for lines in spooler.read_lines(day):
            batch: list[bytes] = []
            for line in lines:
                key, _, payload = line.partition(b"\t")
                if key:
                    if key in seen:
                        duplicates += 1
                        continue
                    seen.add(key)
                batch.append(payload)
            yield batch

    name = f"part-00000-{token}{part_format.extension}"
    local_path = os.path.join(workdir, f"{day.isoformat()}-{name}")
    records = part_format.write(unique(), local_path)
    if records == 0:
        os.unlink(local_path)
        return StagedPartition(day, (), duplicates)
    return StagedPartition(day, (describe_local_file(local_path, name, records),), duplicates)
