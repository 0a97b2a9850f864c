"""Validate arguments and serialize them the way the OpenAPI spec says, before any request.

The spec declares no ``style`` for array parameters, so the OpenAPI default applies (form,
explode=true): ``ownerIds=416&ownerIds=23``. Booleans are lowercase, dates ``YYYY-MM-DD``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from airflow_provider_lucca.client.errors import LuccaConfigError

INT32_MAX = 2**31 - 1

QueryParams = list[tuple[str, str]]


def validate_ids(name: str, value: object) -> tuple[int, ...] | None:
    """Positive int32 ids from an int or an iterable of ints; None means "no filter"."""
    if value is None:
        return None
    items: Iterable[object]
    if isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    elif isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise _bad(name, value, "a list of positive integer ids, e.g. [416, 23]")
    else:
        items = value
    ids: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 1 <= item <= INT32_MAX:
            raise _bad(name, item, f"positive integer ids (1..{INT32_MAX})")
        if item not in ids:
            ids.append(item)
    if not ids:
        raise _bad(name, value, "a non-empty list of ids, or None for no filter")
    return tuple(ids)


def validate_bool(name: str, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _bad(name, value, "True, False or None")


def validate_date(name: str, value: object) -> date | None:
    """A calendar date from a ``date`` or a ``YYYY-MM-DD`` string.

    Datetimes are refused: ``sessionEndsOn`` is a calendar date with no timezone, and silently
    truncating a datetime would pick a day in whatever timezone the value happened to carry.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        raise _bad(name, value, "a calendar date (date or 'YYYY-MM-DD'), not a datetime")
    if isinstance(value, date):
        return date(value.year, value.month, value.day)
    if isinstance(value, str):
        try:
            if len(value) == 10 and value[4] == value[7] == "-":  # not ISO week dates
                return date.fromisoformat(value)
        except ValueError:
            pass
    raise _bad(name, value, "a real calendar date as 'YYYY-MM-DD'")


def realized_trainings_params(
    *,
    owner_ids: object = None,
    has_attended: object = None,
    session_end_on_after: object = None,
    session_end_on_before: object = None,
    training_ids: object = None,
) -> QueryParams:
    """Query parameters of ``GET /talent-training/api/v2/realized-trainings``, validated."""
    params: QueryParams = []
    for owner_id in validate_ids("owner_ids", owner_ids) or ():
        params.append(("ownerIds", str(owner_id)))
    attended = validate_bool("has_attended", has_attended)
    if attended is not None:
        params.append(("hasAttended", "true" if attended else "false"))
    after = validate_date("session_end_on_after", session_end_on_after)
    if after is not None:
        params.append(("sessionEndOnAfter", after.isoformat()))
    before = validate_date("session_end_on_before", session_end_on_before)
    if before is not None:
        params.append(("sessionEndOnBefore", before.isoformat()))
    for training_id in validate_ids("training_ids", training_ids) or ():
        params.append(("trainingId", str(training_id)))
    return params


def _bad(name: str, value: object, expected: str) -> LuccaConfigError:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return LuccaConfigError(f"Invalid {name}={shown}: expected {expected}.")
