"""Regroup a stream of records into per-day blocks of one local spool file, in bounded memory.

Lucca does not sort by date, so any page may hold records of any day in the window. Records are
buffered per day and flushed when the buffer passes a size, so memory stays flat whatever the
window. A flush appends one block per day to a single spool file, opened once per flush, and
remembers where each block is. One file per day would not do: a 3-year history has 1,000+ days,
more files than a process may keep open, each reopened at every flush.
"""

from __future__ import annotations

import dataclasses
import json
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from airflow_provider_lucca.client.errors import LuccaResponseError
from airflow_provider_lucca.extraction.ledger import IdLedger, LedgerMark
from airflow_provider_lucca.extraction.window import DateWindow

FLUSH_BYTES = 4 * 1024 * 1024
READ_BYTES = 1024 * 1024
DATE_FIELD = "sessionEndsOn"
#: The first byte of a spool line: the record is attended (see :func:`is_attended`) or not.
ATTENDED, NOT_ATTENDED = b"+", b"-"
#: Compact, and UTF-8 text kept as is (accents stay readable in the output files).
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def is_attended(record: dict[str, Any]) -> bool:
    """Whether the record is attended: ``hasAttended`` is anything but ``false`` (absent is the
    spec's default, true), as Lucca's ``hasAttended=true`` filter counts it. A null counts as
    attended too, as in the tables, which cannot tell a null from an absent field."""
    return record.get("hasAttended") is not False


@dataclass
class SpoolStats:
    received: int = 0
    kept: int = 0
    outside_window: int = 0
    #: Records of a neighbouring slice's day, served by a slice's superset bounds: stored once,
    #: by the slice that owns the day.
    other_slice: int = 0


@dataclass(frozen=True)
class SpoolMark:
    """Where a spool stands (its stats, file size, blocks per day and ledger), to roll back to."""

    stats: SpoolStats
    size: int
    blocks: dict[str, int]
    ledger: LedgerMark
    seams: int


@dataclass
class DaySpooler:
    """Appends each in-window record as a ``<a><id>\\t<json>`` line to its day's spool blocks.

    ``<a>`` is ``+`` for an attended record (:func:`is_attended`), ``-`` otherwise, so a day's
    attended records are counted without parsing JSON again, as the id prefix lets the writer
    deduplicate; the JSON is the record exactly as received: the server's own text of it when
    the client kept it (:class:`~airflow_provider_lucca.client.paging.RawItems`, numbers byte
    for byte), else the decoded record encoded compactly (same keys and order, numbers as parsed,
    unknown fields kept).
    """

    window: DateWindow
    directory: str
    flush_bytes: int = FLUSH_BYTES
    stats: SpoolStats = field(default_factory=SpoolStats)

    def __post_init__(self) -> None:
        self._days = {day.isoformat(): day.toordinal() for day in self.window.days()}
        self._buffers: dict[str, list[str]] = {}
        self.ledger = IdLedger()
        self._buffered = 0
        self._path = os.path.join(self.directory, "days.spool")
        self._size = 0
        #: Per day, (offset, length) pairs of its blocks in the spool file: 16 bytes a block.
        self._blocks: dict[str, array[int]] = {}
        #: (id, day) of the records left to the slice owning their day (see :meth:`add`).
        self.seams: list[tuple[object, int]] = []

    def add(self, records: list[dict[str, Any]], within: DateWindow | None = None) -> None:
        """Spool the records of one page.

        :param within: the slice of the window this page belongs to, when the window is read in
            slices: a record of a day of the window outside the slice was served because of the
            slice's superset bounds and is left to the slice that owns its day.
        """
        encode = _ENCODE
        days = self._days
        if within is not None and within != self.window:
            first, last = within.start.toordinal(), within.end.toordinal()
            days = {key: ordinal for key, ordinal in days.items() if first <= ordinal < last}
        buffers = self._buffers
        stats = self.stats
        ledger = self.ledger
        # Each item's text as the server sent it, when the client kept it (a compact page, see
        # RawItems): written as is, not encoded again. Otherwise the decoded record is encoded.
        texts: list[str] | None = getattr(records, "texts", None)
        if texts is not None and len(texts) != len(records):
            texts = None
        for index, record in enumerate(records):
            stats.received += 1
            key: Any = record.get(DATE_FIELD)
            record_id = record.get("id")
            ordinal = days.get(key) if isinstance(key, str) else None
            if ordinal is None:
                if isinstance(key, str) and key in self._days:
                    stats.other_slice += 1
                    self._note_seam(record_id, self._days[key])
                    continue
                ordinal = self._outside_ordinal(record, key)
                stats.outside_window += 1
                self._note_id(record_id, ordinal)
                continue
            # The id as JSON: no tab or newline can break the spool line, and a record without
            # an id (missing or null) gets an empty key, so it is never taken for a duplicate.
            if type(record_id) is int:
                prefix = str(record_id)
                ledger.add_int(record_id, ordinal)
            else:
                prefix = "" if record_id is None else encode(record_id)
                if prefix:
                    ledger.add_key(prefix, ordinal)
                else:
                    ledger.add_anonymous(ordinal)
            flag = "-" if record.get("hasAttended") is False else "+"  # is_attended, inline
            text = encode(record) if texts is None else texts[index]
            line = f"{flag}{prefix}\t{text}\n"
            lines = buffers.get(key)
            if lines is None:
                lines = buffers[key] = []
            lines.append(line)
            self._buffered += len(line)
            stats.kept += 1
        if self._buffered >= self.flush_bytes:
            self.flush()

    def _outside_ordinal(self, record: dict[str, Any], value: object) -> int:
        """A date outside the window is expected (superset bounds); a missing or bad one is not."""
        try:
            if isinstance(value, str) and len(value) == 10:
                return date.fromisoformat(value).toordinal()
        except ValueError:
            pass
        raise LuccaResponseError(
            f"Record id={record.get('id')!r} has {DATE_FIELD}={value!r}, expected a YYYY-MM-DD "
            "date: cannot place it in a partition."
        )

    def _note_seam(self, record_id: object, ordinal: int) -> None:
        if type(record_id) is int:
            self.seams.append((record_id, ordinal))
        elif record_id is not None:
            self.seams.append((_ENCODE(record_id), ordinal))

    def unserved_seams(self) -> list[object]:
        """Ids a slice's request served on a neighbouring slice's day that the neighbour did not
        serve on that day: the record moved, or left, between the two slices' reads (a seam
        record moved into a slice already read is in neither slice's records, and under the
        inclusive reading of the bounds in no count either)."""
        if not self.seams:
            return []
        served = self.ledger.days_of({key for key, _ in self.seams})
        return [key for key, ordinal in self.seams if ordinal not in served.get(key, ())]

    def _note_id(self, record_id: object, ordinal: int) -> None:
        """Records dropped as outside the window count too: a record that moves across the
        window's edge while paging is as much a sign of a shifting page as one inside."""
        if type(record_id) is int:
            self.ledger.add_int(record_id, ordinal)
        elif record_id is not None:
            self.ledger.add_key(_ENCODE(record_id), ordinal)
        else:
            self.ledger.add_anonymous(ordinal)

    def mark(self) -> SpoolMark:
        """Where the spool stands, to drop what is added after it (:meth:`rollback`)."""
        self.flush()
        return SpoolMark(
            dataclasses.replace(self.stats),
            self._size,
            {key: len(blocks) for key, blocks in self._blocks.items()},
            self.ledger.mark(),
            len(self.seams),
        )

    def rollback(self, mark: SpoolMark) -> None:
        """Drop every record added since ``mark``: the pages of a slice read in part, before
        its halves are read instead."""
        self._buffers.clear()
        self._buffered = 0
        if os.path.exists(self._path):
            os.truncate(self._path, mark.size)
        self._size = mark.size
        for key in list(self._blocks):
            kept = mark.blocks.get(key, 0)
            if kept:
                del self._blocks[key][kept:]
            else:
                del self._blocks[key]
        self.stats = dataclasses.replace(mark.stats)
        self.ledger.rollback(mark.ledger)
        del self.seams[mark.seams :]

    def flush(self) -> None:
        if not self._buffers:
            return
        with open(self._path, "ab") as spool:
            for key, lines in self._buffers.items():
                block = "".join(lines).encode("utf-8")
                spool.write(block)
                blocks = self._blocks.get(key)
                if blocks is None:
                    blocks = self._blocks[key] = array("q")
                blocks.append(self._size)
                blocks.append(len(block))
                self._size += len(block)
        self._buffers.clear()
        self._buffered = 0

    def read_lines(self, day: date) -> Iterator[list[bytes]]:
        """The ``<a><id>\\t<json>`` lines of a day (without newline), after :meth:`flush`, in
        batches of about :data:`READ_BYTES` (one block at least): batches for the writers, in
        memory bounded by the flush size however big the day; nothing for a day without records.
        """
        blocks = self._blocks.get(day.isoformat())
        if not blocks:
            return
        with open(self._path, "rb") as spool:
            batch: list[bytes] = []
            size = 0
            for index in range(0, len(blocks), 2):
                spool.seek(blocks[index])
                block = spool.read(blocks[index + 1])
                lines = block.split(b"\n")
                lines.pop()  # every line ends with a newline: the last item is empty
                batch += lines
                size += len(block)
                if size >= READ_BYTES:
                    yield batch
                    batch, size = [], 0
            if batch:
                yield batch
