"""Scheduled record moves: a record's ``sessionEndsOn`` changing while a client pages.

A real tenant's data is edited while integrations read it. When the server orders by end date
and pages by offset, a record whose end date changes mid-run shifts every later page by one:
the moved record can be served twice and the record at the page boundary never. A move is
timed by API request number, like a fault (see :mod:`.faults`), so a run can be replayed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = ["RecordMove", "coerce_moves"]

_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_KEYS = frozenset({"id", "to", "after_request", "every"})


def _date(value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"moves: 'to' dates must be YYYY-MM-DD, got {value!r}")


def _int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"moves: {name!r} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, init=False)
class RecordMove:
    """Set record ``id``'s ``sessionEndsOn`` once API request ``after_request`` is answered.

    Attributes:
        id: the record to move.
        to: the new end date(s); ``sessionStartsOn`` moves by the same number of days. One
            date or several (dates or ``YYYY-MM-DD`` strings); several need ``every``.
        after_request: 1-based API request number, counted like faults; the move is in
            place before request ``after_request + 1`` is served.
        every: repeat every ``every`` requests after that, cycling through ``to``
            (``None``: move once).
    """

    id: int
    to: tuple[date, ...]
    after_request: int
    every: int | None

    def __init__(
        self,
        id: int,
        to: date | str | Iterable[date | str],
        after_request: int,
        every: int | None = None,
    ) -> None:
        _int("id", id, 1)
        raw: object = to
        if isinstance(raw, str | date):
            raw = (raw,)
        if not isinstance(raw, Iterable):
            raise ValueError(f"moves: 'to' must be a date or a list of dates, got {raw!r}")
        dates = tuple(_date(item) for item in raw)
        if not dates:
            raise ValueError("moves: 'to' needs at least one date")
        _int("after_request", after_request, 1)
        if every is not None:
            _int("every", every, 1)
        elif len(dates) > 1:
            raise ValueError("moves: several 'to' dates need 'every' (they are cycled through)")
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "to", dates)
        object.__setattr__(self, "after_request", after_request)
        object.__setattr__(self, "every", every)

    def target_after(self, number: int) -> date | None:
        """The end date this move sets once request ``number`` is answered, or None."""
        elapsed = number - self.after_request
        if elapsed < 0:
            return None
        if self.every is None:
            return self.to[0] if elapsed == 0 else None
        if elapsed % self.every:
            return None
        return self.to[(elapsed // self.every) % len(self.to)]

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used by ``POST /_sandbox/config``."""
        return {
            "id": self.id,
            "to": [day.isoformat() for day in self.to],
            "after_request": self.after_request,
            "every": self.every,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordMove:
        """Build a move from its JSON shape; raise ValueError on anything unexpected."""
        unknown = set(data) - _KEYS
        if unknown:
            raise ValueError(f"moves: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        missing = {"id", "to", "after_request"} - set(data)
        if missing:
            raise ValueError(f"moves: missing key(s) {', '.join(sorted(missing))}")
        return cls(
            id=data["id"],
            to=data["to"],
            after_request=data["after_request"],
            every=data.get("every"),
        )


def coerce_moves(value: object) -> tuple[RecordMove, ...]:
    """Normalise ``None``, or a list of :class:`RecordMove` or their dict shape, to a tuple."""
    if value is None:
        return ()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValueError("moves must be a list of {id, to, after_request[, every]} objects")
    moves: list[RecordMove] = []
    for item in value:
        if isinstance(item, RecordMove):
            moves.append(item)
        elif isinstance(item, Mapping):
            moves.append(RecordMove.from_dict(item))
        else:
            raise ValueError(f"moves must be a list of objects, got an item {item!r}")
    return tuple(moves)
