"""Regroup a stream of records into per-day local spool files, in bounded memory.

Lucca does not sort by date, so any page may hold records of any day in the window. Records are
buffered per day and flushed to local files when the buffer passes a size, so memory stays flat
whatever the window, and no more than one file is open at a time (a 3-year history has 1,000+
days, more than a process may keep open).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from airflow_provider_lucca.client.errors import LuccaResponseError
from airflow_provider_lucca.extraction.window import DateWindow

FLUSH_BYTES = 4 * 1024 * 1024
DATE_FIELD = "sessionEndsOn"
#: Compact, and UTF-8 text kept as is (accents stay readable in the output files).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass
class SpoolStats:
    received: int = 0
    kept: int = 0
    outside_window: int = 0


@dataclass
class DaySpooler:
    """Appends each in-window record as ``<id>\\t<json>`` to its day's spool file.

    The id prefix lets the writer deduplicate a day without parsing JSON again; the JSON is the
    record exactly as received (same keys and order, numbers as parsed, unknown fields kept).
    """

    window: DateWindow
    directory: str
    flush_bytes: int = FLUSH_BYTES
    stats: SpoolStats = field(default_factory=SpoolStats)

    def __post_init__(self) -> None:
        self._days = {day.isoformat(): day for day in self.window.days()}
        self._buffers: dict[str, list[str]] = {}
        self._buffered = 0

    def add(self, records: list[dict[str, Any]]) -> None:
        encode = _ENCODE
        for record in records:
            self.stats.received += 1
            key = record.get(DATE_FIELD)
            if not isinstance(key, str) or key not in self._days:
                self._check_outside(record, key)
                self.stats.outside_window += 1
                continue
            # The id as JSON: no tab or newline can break the spool line, and a record without
            # an id (missing or null) gets an empty key, so it is never taken for a duplicate.
            record_id = record.get("id")
            line = f"{'' if record_id is None else encode(record_id)}\t{encode(record)}\n"
            self._buffers.setdefault(key, []).append(line)
            self._buffered += len(line)
            self.stats.kept += 1
        if self._buffered >= self.flush_bytes:
            self.flush()

    def _check_outside(self, record: dict[str, Any], value: object) -> None:
        """A date outside the window is expected (superset bounds); a missing or bad one is not."""
        try:
            if isinstance(value, str) and len(value) == 10:
                date.fromisoformat(value)
                return
        except ValueError:
            pass
        raise LuccaResponseError(
            f"Record id={record.get('id')!r} has {DATE_FIELD}={value!r}, expected a YYYY-MM-DD "
            "date: cannot place it in a partition."
        )

    def flush(self) -> None:
        for key, lines in self._buffers.items():
            with open(self.path(key), "a", encoding="utf-8") as spool:
                spool.writelines(lines)
        self._buffers.clear()
        self._buffered = 0

    def path(self, day: str) -> str:
        return os.path.join(self.directory, f"{day}.spool")

    def read(self, day: date) -> Iterator[tuple[str, str]]:
        """``(id, json)`` of a day, after :meth:`flush`; nothing for a day without records."""
        path = self.path(day.isoformat())
        if not os.path.exists(path):
            return
        with open(path, encoding="utf-8") as spool:
            for line in spool:
                key, _, payload = line.rstrip("\n").partition("\t")
                yield key, payload
