"""Where each record id was served during one read of a window, to prove the read consistent.

Lucca documents no sort order. A server that orders by end date with offset cursors shifts its pages
when a record's ``sessionEndsOn`` changes while a client pages: the moved record is served twice,
on two days, and the record at the page boundary is never served, with as many items as the count.
Only ids counted across the whole read (not per day) reveal it, so every id is noted here with the
day it was served on, in about 12 bytes a record (two machine-word arrays per hash bucket), which
keeps memory flat for a window of millions of records.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

BUCKETS = 256
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class Repeats:
    """What the ledger found: extra occurrences of ids, and ids served on several days."""

    extra: int = 0
    #: id -> the days it was served on, in the order served (only ids seen on 2+ distinct days).
    moved: dict[object, tuple[date, ...]] = field(default_factory=dict)

    def describe_moves(self, limit: int = 5) -> str:
        shown = [
            f"id={record_id} on {' then '.join(day.isoformat() for day in days)}"
            for record_id, days in list(self.moved.items())[:limit]
        ]
        more = len(self.moved) - len(shown)
        return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


@dataclass(frozen=True)
class LedgerMark:
    """The ledger's length per bucket, per other id, and its anonymous counts at one moment."""

    lengths: tuple[int, ...]
    other: dict[str, int]
    anonymous: dict[int, int]


class IdLedger:
    """Notes ``(id, day)`` for every record of a read; ids of any JSON type, None ignored.

    A record without an id cannot be recognised when it comes back, so it is never a repeat.
    """

    def __init__(self) -> None:
        self._ids = [array("q") for _ in range(BUCKETS)]
        self._days = [array("i") for _ in range(BUCKETS)]
        self._other: dict[str, list[int]] = {}
        #: Records without an id, per day: they cannot be recognised, only counted.
        self.anonymous: dict[int, int] = {}

    def add_int(self, record_id: int, ordinal: int) -> None:
        """An int id (the usual case, kept out of the generic path for speed)."""
        if INT64_MIN <= record_id <= INT64_MAX:
            bucket = record_id & (BUCKETS - 1)
            self._ids[bucket].append(record_id)
            self._days[bucket].append(ordinal)
        else:
            self._other.setdefault(str(record_id), []).append(ordinal)

    def add_key(self, key: str, ordinal: int) -> None:
        """Any other id, by its JSON text (``"A-17"``, ``1.5``...)."""
        self._other.setdefault(key, []).append(ordinal)

    def add_anonymous(self, ordinal: int) -> None:
        self.anonymous[ordinal] = self.anonymous.get(ordinal, 0) + 1

    def days_of(self, keys: set[object]) -> dict[object, set[int]]:
        """The days each of ``keys`` was served on (an int id, or the JSON text of another id,
        as noted); one pass over the buckets those keys fall in."""
        found: dict[object, set[int]] = {}
        by_bucket: dict[int, set[int]] = {}
        for key in keys:
            if type(key) is int and INT64_MIN <= key <= INT64_MAX:
                by_bucket.setdefault(key & (BUCKETS - 1), set()).add(key)
            elif (days := self._other.get(str(key))) is not None:
                found[key] = set(days)
        for bucket, wanted in by_bucket.items():
            for record_id, ordinal in zip(self._ids[bucket], self._days[bucket], strict=True):
                if record_id in wanted:
                    found.setdefault(record_id, set()).add(ordinal)
        return found

    def mark(self) -> LedgerMark:
        """Where the ledger stands, to forget what is noted after it (:meth:`rollback`)."""
        return LedgerMark(
            tuple(len(ids) for ids in self._ids),
            {key: len(days) for key, days in self._other.items()},
            dict(self.anonymous),
        )

    def rollback(self, mark: LedgerMark) -> None:
        """Forget every id noted since ``mark``: the records of a request given up on."""
        for ids, days, length in zip(self._ids, self._days, mark.lengths, strict=True):
            del ids[length:]
            del days[length:]
        for key in list(self._other):
            kept = mark.other.get(key, 0)
            if kept:
                del self._other[key][kept:]
            else:
                del self._other[key]
        self.anonymous = dict(mark.anonymous)

    def same_as(self, other: IdLedger) -> bool:
        """Whether two reads served the same ids on the same days (and as many records without
        id per day): a second read that agrees shows that nothing changed between them."""
        if self.anonymous != other.anonymous or len(self._other) != len(other._other):
            return False
        if any(
            sorted(days) != sorted(other._other.get(key, ())) for key, days in self._other.items()
        ):
            return False
        for bucket in range(BUCKETS):  # one bucket at a time: memory stays flat
            mine = sorted(zip(self._ids[bucket], self._days[bucket], strict=True))
            theirs = sorted(zip(other._ids[bucket], other._days[bucket], strict=True))
            if mine != theirs:
                return False
        return True

    def repeats(self) -> Repeats:
        extra = 0
        moved: dict[object, tuple[date, ...]] = {}
        for ids, days in zip(self._ids, self._days, strict=True):
            if len(set(ids)) == len(ids):
                continue  # the common case: a C-speed check per bucket
            served: dict[int, list[int]] = {}
            for record_id, ordinal in zip(ids, days, strict=True):
                served.setdefault(record_id, []).append(ordinal)
            extra += _note(served, moved)
        extra += _note(self._other, moved)
        return Repeats(extra, moved)


def _note(served: Mapping[Any, list[int]], moved: dict[object, tuple[date, ...]]) -> int:
    extra = 0
    for record_id, ordinals in served.items():
        if len(ordinals) > 1:
            extra += len(ordinals) - 1
            if len(set(ordinals)) > 1:
                moved[record_id] = tuple(date.fromordinal(ordinal) for ordinal in ordinals)
    return extra
