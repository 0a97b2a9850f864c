"""The API's query string: strict validation, filters, opaque cursors and the page payload.

No HTTP here: :func:`parse_query` turns a raw query string into a :class:`PageRequest` or
raises :class:`QueryError` (answered as a 400 ``invalid-query`` problem), and
:func:`page_payload` builds the JSON body of one page from the matching records.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from .config import parse_iso_date

__all__ = [
    "Filters",
    "PageRequest",
    "QueryError",
    "filter_records",
    "page_payload",
    "parse_query",
]

_INT32_MAX = 2**31 - 1
_INT_RE = re.compile(r"[0-9]+")
_CURSOR_BODY_RE = re.compile(r"[A-Za-z0-9_-]+")
_CURSOR_PAYLOAD_RE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{16})")
_QUERY_PARAMS = frozenset(
    {
        "ownerIds",
        "trainingId",
        "hasAttended",
        "sessionEndOnAfter",
        "sessionEndOnBefore",
        "fields.root",
        "page",
        "limit",
    }
)
_REPEATABLE_PARAMS = frozenset({"ownerIds", "trainingId"})
_ROOT_FIELDS = ("prev", "next", "count")


class QueryError(ValueError):
    """The query string is invalid; the message is the problem's ``detail``."""


@dataclass(frozen=True)
class Filters:
    """Normalised filters; equal filters share one cache entry and one cursor fingerprint."""

    owner_ids: frozenset[int] = frozenset()
    training_ids: frozenset[int] = frozenset()
    has_attended: bool | None = None
    after: str | None = None
    before: str | None = None

    def fingerprint(self) -> str:
        canonical = json.dumps(
            [
                sorted(self.owner_ids),
                sorted(self.training_ids),
                self.has_attended,
                self.after,
                self.before,
            ],
            separators=(",", ":"),
        )
        return hashlib.blake2b(canonical.encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class PageRequest:
    filters: Filters
    fields: frozenset[str]
    limit: int
    offset: int


# --------------------------------------------------------------------------- cursors


def encode_cursor(offset: int, fingerprint: str) -> str:
    """Opaque cursor: ``!`` + unpadded urlsafe base64 of ``<offset>.<filters fingerprint>``."""
    payload = f"{offset}.{fingerprint}".encode()
    return "!" + base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, fingerprint: str) -> int:
    body = cursor[1:]
    payload: str | None = None
    if _CURSOR_BODY_RE.fullmatch(body):
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            payload = None
    match = _CURSOR_PAYLOAD_RE.fullmatch(payload) if payload is not None else None
    if match is None:
        raise QueryError("'page' is not a cursor issued by this server.")
    if match.group(2) != fingerprint:
        raise QueryError(
            "'page' cursor was issued for different filters; resend the filters it was "
            "issued with, or start again without 'page'."
        )
    return int(match.group(1))


# --------------------------------------------------------------------------- parsing


def _parse_ids(name: str, values: Sequence[str]) -> frozenset[int]:
    ids: set[int] = set()
    for value in values:
        if "," in value:
            raise QueryError(
                f"'{name}' must be repeated ({name}=416&{name}=23), not a comma-separated list."
            )
        if not _INT_RE.fullmatch(value) or not 1 <= int(value) <= _INT32_MAX:
            raise QueryError(f"'{name}' must be an integer between 1 and {_INT32_MAX}.")
        ids.add(int(value))
    return frozenset(ids)


def _parse_date_param(name: str, value: str) -> str:
    try:
        parse_iso_date(name, value)
    except ValueError:
        raise QueryError(f"'{name}' must be a date formatted as YYYY-MM-DD.") from None
    return value


def parse_query(query: str) -> PageRequest:
    """Validate the query string the way a strict OpenAPI validator would."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise QueryError("Malformed query string.") from None
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    unknown = sorted(set(params) - _QUERY_PARAMS)
    if unknown:
        names = ", ".join(repr(name) for name in unknown[:5])
        raise QueryError(f"Unknown query parameter(s): {names}.")
    for key, values in params.items():
        if key not in _REPEATABLE_PARAMS and len(values) > 1:
            raise QueryError(f"'{key}' may be given only once.")

    def single(key: str) -> str | None:
        values = params.get(key)
        return values[0] if values else None

    has_attended: bool | None = None
    raw = single("hasAttended")
    if raw is not None:
        if raw not in ("true", "false"):
            raise QueryError("'hasAttended' must be 'true' or 'false'.")
        has_attended = raw == "true"

    raw_after = single("sessionEndOnAfter")
    raw_before = single("sessionEndOnBefore")
    filters = Filters(
        owner_ids=_parse_ids("ownerIds", params.get("ownerIds", ())),
        training_ids=_parse_ids("trainingId", params.get("trainingId", ())),
        has_attended=has_attended,
        after=None if raw_after is None else _parse_date_param("sessionEndOnAfter", raw_after),
        before=None if raw_before is None else _parse_date_param("sessionEndOnBefore", raw_before),
    )

    fields: set[str] = set()
    raw = single("fields.root")
    if raw is not None:
        for name in raw.split(","):
            if not name:
                continue
            if name not in _ROOT_FIELDS:
                raise QueryError(
                    f"'fields.root' accepts a comma-separated list of {', '.join(_ROOT_FIELDS)}."
                )
            fields.add(name)

    limit = 20
    raw = single("limit")
    if raw is not None:
        if not _INT_RE.fullmatch(raw) or int(raw) > 100:
            raise QueryError("'limit' must be an integer between 0 and 100.")
        limit = int(raw)

    offset = 0
    raw = single("page")
    if raw is not None:
        if raw.startswith("!"):
            offset = decode_cursor(raw, filters.fingerprint())
        elif _INT_RE.fullmatch(raw) and int(raw) <= _INT32_MAX:
            offset = int(raw) * limit
        else:
            raise QueryError(
                "'page' must be a page index (integer >= 0) or a cursor returned in next/prev."
            )
    return PageRequest(filters=filters, fields=frozenset(fields), limit=limit, offset=offset)


# --------------------------------------------------------------------------- filtering, pages


def _training_id(record: Mapping[str, Any]) -> object:
    training = record.get("training")
    return training.get("id") if isinstance(training, Mapping) else None


def filter_records(
    records: list[dict[str, Any]], filters: Filters, bounds: str
) -> list[dict[str, Any]]:
    """Return the matching records, in the order of ``records`` (one pass per filter)."""
    result = records
    if filters.owner_ids:
        owners = filters.owner_ids
        result = [r for r in result if r.get("ownerId") in owners]
    if filters.training_ids:
        trainings = filters.training_ids
        result = [r for r in result if _training_id(r) in trainings]
    if filters.has_attended is not None:
        wanted = filters.has_attended
        result = [r for r in result if r.get("hasAttended", True) is wanted]
    # ISO dates compare correctly as strings; records are validated to carry one.
    after, before = filters.after, filters.before
    if after is not None:
        if bounds == "inclusive":
            result = [r for r in result if r["sessionEndsOn"] >= after]
        else:
            result = [r for r in result if r["sessionEndsOn"] > after]
    if before is not None:
        if bounds == "inclusive":
            result = [r for r in result if r["sessionEndsOn"] <= before]
        else:
            result = [r for r in result if r["sessionEndsOn"] < before]
    return result


def page_payload(matching: list[dict[str, Any]], request: PageRequest) -> dict[str, Any]:
    """The body of one page: its items, and the ``fields.root`` the request asked for."""
    total = len(matching)
    offset, limit = request.offset, request.limit
    payload: dict[str, Any] = {"items": matching[offset : offset + limit]}
    fingerprint = request.filters.fingerprint() if request.fields else ""
    if "prev" in request.fields:
        has_prev = offset > 0 and limit > 0
        payload["prev"] = (
            encode_cursor(max(0, min(offset, total) - limit), fingerprint) if has_prev else None
        )
    if "next" in request.fields:
        # No trailing empty page: the page that reaches the total has no next. With
        # limit=0 a next cursor would point at the same offset forever, so none either.
        has_next = limit > 0 and offset + limit < total
        payload["next"] = encode_cursor(offset + limit, fingerprint) if has_next else None
    if "count" in request.fields:
        payload["count"] = total
    return payload
