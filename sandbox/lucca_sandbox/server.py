"""HTTP emulator of Lucca's ``GET /talent-training/api/v2/realized-trainings``.

The extraction code must be proven against the things a real tenant does to it (cursors,
``fields.root``, strict query validation, a shared per-tenant rate limit, the unknown reading
of the date bounds, gateway errors, dropped connections...) without a Lucca account. This
module is a real HTTP/1.1 server (standard library only, no Airflow) so the same sandbox
serves unit tests in-process, the demo and the benchmark on loopback, and docker-compose.

Everything that can fail is deterministic: data from a seed, faults from the API request
number (see :mod:`.faults`), so a failing run can be replayed exactly.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import math
import re
import secrets
import socket
import sys
import threading
import time
import traceback
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl

from .data import generate_records
from .faults import FaultSchedule
from .moves import RecordMove, coerce_moves

__all__ = [
    "API_PATH",
    "BOUNDS",
    "DEFAULT_API_KEY",
    "ORDERS",
    "RateLimiter",
    "SandboxConfig",
    "SandboxServer",
]

API_PATH = "/talent-training/api/v2/realized-trainings"
ADMIN_PREFIX = "/_sandbox/"
BOUNDS = ("exclusive", "inclusive")
#: Item order of the API: by id (stable pages), or by sessionEndsOn then id (pages that shift
#: when an end date changes mid-run, like a server that orders by date with offset cursors).
ORDERS = ("id", "end_date")
#: The API key everyone knows; refused together with a non-loopback bind.
DEFAULT_API_KEY = "sandbox-api-key"

_INT32_MAX = 2**31 - 1
_MAX_RECORDS = 10_000_000
_MAX_ADMIN_BODY = 256 * 1024 * 1024
_CACHE_SIZE = 8
_RATE_WINDOW = 60.0

_INT_RE = re.compile(r"[0-9]+")
_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_CURSOR_BODY_RE = re.compile(r"[A-Za-z0-9_-]+")
_CURSOR_PAYLOAD_RE = re.compile(r"([0-9]{1,12})\.([0-9a-f]{16})")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")
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
_CONFIG_KEYS = frozenset(
    {
        "bounds",
        "requests_per_minute",
        "faults",
        "slow_seconds",
        "redirect_url",
        "seed",
        "records",
        "start",
        "end",
        "delete_ids",
        "add_records",
        "order",
        "moves",
    }
)

_HTML_ERROR_PAGE = (
    '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
    "<title>Maintenance en cours</title></head>\n<body><h1>Service temporairement "
    "indisponible</h1><p>Lucca est en cours de maintenance. Merci de réessayer dans "
    "quelques instants.</p></body></html>\n"
).encode()


# --------------------------------------------------------------------------- configuration


def _validate_bounds(value: object) -> str:
    if value not in BOUNDS:
        raise ValueError(f"bounds must be one of {', '.join(BOUNDS)}, got {value!r}")
    return str(value)


def _validate_order(value: object) -> str:
    if value not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {value!r}")
    return str(value)


def _is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; wildcards and names are not."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _validate_admin_token(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise ValueError("admin_token must be a non-empty string of visible ASCII characters")
    return value


def _validate_non_negative_int(name: str, value: object, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return value


def _validate_seconds(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _validate_url(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"redirect_url must be an http(s) URL or null, got {value!r}")
    return value.rstrip("/")


def _parse_iso_date(name: str, value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a YYYY-MM-DD date, got {value!r}")


def _coerce_faults(value: object) -> FaultSchedule | None:
    if value is None or isinstance(value, FaultSchedule):
        return value
    if isinstance(value, Mapping):
        return FaultSchedule.from_dict(value)
    raise ValueError("faults must be a FaultSchedule, an object or null")


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes the sandbox; the defaults are what the demo and tests expect.

    ``port=0`` asks the OS for a free port (read it back from ``SandboxServer.port``).
    ``bounds`` selects how ``sessionEndOnAfter``/``sessionEndOnBefore`` are read, because
    Lucca does not document it for v2 and clients must be right under both readings.
    ``order`` is ``"id"`` or ``"end_date"`` (see :data:`ORDERS`); ``moves`` are
    :class:`~.moves.RecordMove` (or their dict shape) applied as API requests are answered.

    The sandbox is a development tool: it refuses a ``host`` that is not a loopback address
    unless ``allow_remote`` is set and ``api_key`` is not :data:`DEFAULT_API_KEY`. The admin
    endpoints that change it need ``admin_token`` (``Authorization: Bearer <token>``); when it
    is None the server generates one (read it from ``SandboxServer.admin_token``).
    """

    seed: int = 42
    records: int = 2000
    start: date = date(2025, 1, 1)
    end: date = date(2025, 12, 31)
    api_key: str = "sandbox-api-key"
    bounds: str = "exclusive"
    requests_per_minute: int = 0
    faults: FaultSchedule | None = None
    slow_seconds: float = 3.0
    redirect_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 0
    verbose: bool = False
    order: str = "id"
    moves: Sequence[RecordMove] = ()
    admin_token: str | None = field(default=None, repr=False)
    allow_remote: bool = False

    def __post_init__(self) -> None:
        _validate_bounds(self.bounds)
        _validate_order(self.order)
        object.__setattr__(self, "moves", coerce_moves(self.moves))
        _validate_admin_token(self.admin_token)
        _validate_non_negative_int("records", self.records, _MAX_RECORDS)
        _validate_non_negative_int("requests_per_minute", self.requests_per_minute)
        _validate_non_negative_int("port", self.port, 65535)
        _validate_seconds("slow_seconds", self.slow_seconds)
        object.__setattr__(self, "start", _parse_iso_date("start", self.start))
        object.__setattr__(self, "end", _parse_iso_date("end", self.end))
        object.__setattr__(self, "faults", _coerce_faults(self.faults))
        object.__setattr__(self, "redirect_url", _validate_url(self.redirect_url))
        if self.start > self.end:
            raise ValueError("start must be on or before end")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not _is_loopback(self.host):
            missing = []
            if not self.allow_remote:
                missing.append("--allow-remote (SandboxConfig(allow_remote=True))")
            if self.api_key == DEFAULT_API_KEY:
                missing.append("a non-default --api-key (or $LUCCA_SANDBOX_API_KEY)")
            if missing:
                raise ValueError(
                    f"refusing to listen on {self.host!r}, which is not a loopback address: "
                    "the sandbox is a development tool with a well-known default API key. "
                    f"To serve other machines or containers, pass {' and '.join(missing)}."
                )


# --------------------------------------------------------------------------- rate limiting


class RateLimiter:
    """Sliding 60 s window over admitted requests, global to the server (one tenant).

    Lucca enforces its limit per tenant, shared by every integration, so the sandbox keeps a
    single window. Refused requests are not recorded: a client hammering on 429 must not
    extend its own penalty beyond what the window says. ``clock`` is injectable for tests.
    """

    def __init__(self, requests_per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.requests_per_minute = requests_per_minute
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self) -> int | None:
        """Admit one request and return None, or return the Retry-After delay in seconds."""
        with self._lock:
            limit = self.requests_per_minute
            if limit <= 0:
                return None
            now = self._clock()
            window_start = now - _RATE_WINDOW
            admitted = self._admitted
            while admitted and admitted[0] <= window_start:
                admitted.popleft()
            if len(admitted) < limit:
                admitted.append(now)
                return None
            # The slot that frees first is the one admitted ``limit`` requests ago.
            frees_at = admitted[len(admitted) - limit] + _RATE_WINDOW
            return max(1, math.ceil(frees_at - now))

    def reset(self) -> None:
        """Forget every admitted request (a fresh minute)."""
        with self._lock:
            self._admitted.clear()


# --------------------------------------------------------------------------- query parsing


class _ProblemError(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str = "",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.headers = tuple(headers)


def _bad_request(detail: str) -> _ProblemError:
    return _ProblemError(400, detail, "invalid-query")


@dataclass(frozen=True)
class _Filters:
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
class _PageRequest:
    filters: _Filters
    fields: frozenset[str]
    limit: int
    offset: int


def _encode_cursor(offset: int, fingerprint: str) -> str:
    """Opaque cursor: ``!`` + unpadded urlsafe base64 of ``<offset>.<filters fingerprint>``."""
    payload = f"{offset}.{fingerprint}".encode()
    return "!" + base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str, fingerprint: str) -> int:
    body = cursor[1:]
    payload: str | None = None
    if _CURSOR_BODY_RE.fullmatch(body):
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            payload = None
    match = _CURSOR_PAYLOAD_RE.fullmatch(payload) if payload is not None else None
    if match is None:
        raise _bad_request("'page' is not a cursor issued by this server.")
    if match.group(2) != fingerprint:
        raise _bad_request(
            "'page' cursor was issued for different filters; resend the filters it was "
            "issued with, or start again without 'page'."
        )
    return int(match.group(1))


def _parse_ids(name: str, values: Sequence[str]) -> frozenset[int]:
    ids: set[int] = set()
    for value in values:
        if "," in value:
            raise _bad_request(
                f"'{name}' must be repeated ({name}=416&{name}=23), not a comma-separated list."
            )
        if not _INT_RE.fullmatch(value) or not 1 <= int(value) <= _INT32_MAX:
            raise _bad_request(f"'{name}' must be an integer between 1 and {_INT32_MAX}.")
        ids.add(int(value))
    return frozenset(ids)


def _parse_date_param(name: str, value: str) -> str:
    try:
        _parse_iso_date(name, value)
    except ValueError:
        raise _bad_request(f"'{name}' must be a date formatted as YYYY-MM-DD.") from None
    return value


def _parse_query(query: str) -> _PageRequest:
    """Validate the query string the way a strict OpenAPI validator would."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False)
    except ValueError:
        raise _bad_request("Malformed query string.") from None
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    unknown = sorted(set(params) - _QUERY_PARAMS)
    if unknown:
        names = ", ".join(repr(name) for name in unknown[:5])
        raise _bad_request(f"Unknown query parameter(s): {names}.")
    for key, values in params.items():
        if key not in _REPEATABLE_PARAMS and len(values) > 1:
            raise _bad_request(f"'{key}' may be given only once.")

    def single(key: str) -> str | None:
        values = params.get(key)
        return values[0] if values else None

    has_attended: bool | None = None
    raw = single("hasAttended")
    if raw is not None:
        if raw not in ("true", "false"):
            raise _bad_request("'hasAttended' must be 'true' or 'false'.")
        has_attended = raw == "true"

    raw_after = single("sessionEndOnAfter")
    raw_before = single("sessionEndOnBefore")
    filters = _Filters(
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
                raise _bad_request(
                    f"'fields.root' accepts a comma-separated list of {', '.join(_ROOT_FIELDS)}."
                )
            fields.add(name)

    limit = 20
    raw = single("limit")
    if raw is not None:
        if not _INT_RE.fullmatch(raw) or int(raw) > 100:
            raise _bad_request("'limit' must be an integer between 0 and 100.")
        limit = int(raw)

    offset = 0
    raw = single("page")
    if raw is not None:
        if raw.startswith("!"):
            offset = _decode_cursor(raw, filters.fingerprint())
        elif _INT_RE.fullmatch(raw) and int(raw) <= _INT32_MAX:
            offset = int(raw) * limit
        else:
            raise _bad_request(
                "'page' must be a page index (integer >= 0) or a cursor returned in next/prev."
            )
    return _PageRequest(filters=filters, fields=frozenset(fields), limit=limit, offset=offset)


def _training_id(record: Mapping[str, Any]) -> object:
    training = record.get("training")
    return training.get("id") if isinstance(training, Mapping) else None


def _filter_records(
    records: list[dict[str, Any]], filters: _Filters, bounds: str
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


def _validate_added_record(record: object) -> dict[str, Any]:
    """Accept any shape a test wants to inject, as long as the server can index it."""
    if not isinstance(record, dict):
        raise ValueError("add_records must be a list of objects")
    record_id = record.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, int) or record_id < 1:
        raise ValueError(f"added records need an integer id >= 1, got {record_id!r}")
    _parse_iso_date("sessionEndsOn", record.get("sessionEndsOn"))
    return record


def _end_date_key(record: Mapping[str, Any]) -> tuple[str, int]:
    return (cast(str, record["sessionEndsOn"]), cast(int, record["id"]))


def _record_id(record: Mapping[str, Any]) -> int:
    return cast(int, record["id"])


def _moved(record: Mapping[str, Any], target: date) -> dict[str, Any]:
    """A copy of ``record`` ending on ``target``, its start shifted by the same delta."""
    moved = dict(record)
    old_end = _parse_iso_date("sessionEndsOn", record["sessionEndsOn"])  # validated when added
    moved["sessionEndsOn"] = target.isoformat()
    starts = record.get("sessionStartsOn")
    if isinstance(starts, str) and _DATE_RE.fullmatch(starts):
        with contextlib.suppress(ValueError, OverflowError):
            moved["sessionStartsOn"] = (date.fromisoformat(starts) + (target - old_end)).isoformat()
    return moved


def _check_move_ids(moves: Sequence[RecordMove], records: list[dict[str, Any]]) -> None:
    for move in moves:
        index = bisect.bisect_left(records, move.id, key=_record_id)
        if index == len(records) or records[index]["id"] != move.id:
            raise ValueError(f"moves: no record with id {move.id}")


def _validate_ids(value: object) -> set[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError("delete_ids must be a list of integers")
    ids: set[int] = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"delete_ids must be a list of integers, got {item!r}")
        ids.add(item)
    return ids


# --------------------------------------------------------------------------- shared state


class _SandboxState:
    """Dataset, filter cache, counters and settings shared by every handler thread.

    Data changes replace the records list (and a moved record's dict) instead of mutating
    them, so a handler that already holds a filtered list keeps serving a consistent snapshot
    without holding the lock.
    """

    def __init__(self, config: SandboxConfig) -> None:
        self.lock = threading.RLock()
        if config.admin_token is None:
            config = dataclasses.replace(config, admin_token=secrets.token_urlsafe(32))
        self.config = config
        self.records: list[dict[str, Any]] = generate_records(
            config.seed, config.records, config.start, config.end
        )
        _check_move_ids(config.moves, self.records)
        self.generation = 0
        self._cache: OrderedDict[tuple[int, str, str, _Filters], list[dict[str, Any]]] = (
            OrderedDict()
        )
        self._by_end_date: tuple[int, list[dict[str, Any]]] | None = None
        self.limiter = RateLimiter(config.requests_per_minute)
        self.requests = 0
        self.by_status: dict[str, int] = {}
        self.faults = 0
        self.faults_by_kind: dict[str, int] = {}
        self.moves_applied = 0
        # Moves of every request number up to this one are applied; ``epoch`` changes on
        # reset-stats so that a request numbered before the reset cannot replay moves.
        self._moves_through = 0
        self.epoch = 0

    @property
    def admin_token(self) -> str:
        return cast(str, self.config.admin_token)

    # -- counters

    def begin_api_request(self) -> tuple[int, int, str | None]:
        """Number the request (1-based) and look up its fault under one lock.

        Returns ``(epoch, number, fault)``; pass ``epoch, number`` to :meth:`end_api_request`.
        Every earlier request counts as answered here, so the moves due after them are in
        place before this request is served, even if an earlier handler is still running.
        """
        with self.lock:
            self._apply_moves_through(self.requests)
            self.requests += 1
            number = self.requests
            schedule = self.config.faults
            fault = schedule.fault_for(number) if schedule is not None else None
            if fault is not None:
                self.faults += 1
                self.faults_by_kind[fault] = self.faults_by_kind.get(fault, 0) + 1
            return self.epoch, number, fault

    def end_api_request(self, epoch: int, number: int) -> None:
        """Request ``number`` is answered (or abandoned): apply the moves due after it."""
        with self.lock:
            if epoch == self.epoch:
                self._apply_moves_through(number)

    def _apply_moves_through(self, number: int) -> None:
        """Apply the moves scheduled after requests ``_moves_through + 1 .. number``."""
        first = self._moves_through + 1
        if number < first:
            return
        self._moves_through = number
        moves = self.config.moves
        if not moves:
            return
        targets: dict[int, date] = {}
        for answered in range(first, number + 1):
            for move in moves:
                target = move.target_after(answered)
                if target is not None:
                    targets[move.id] = target  # a later firing of the same record wins
        if not targets:
            return
        records = self.records
        copied = False
        for record_id, target in targets.items():
            index = bisect.bisect_left(records, record_id, key=_record_id)
            if index == len(records) or records[index]["id"] != record_id:
                continue  # deleted since the move was configured
            if not copied:
                records, copied = list(records), True
            records[index] = _moved(records[index], target)
            self.moves_applied += 1
        if copied:
            self.records = records
            self.generation += 1
            self._cache.clear()

    def count_status(self, status: int) -> None:
        with self.lock:
            key = str(status)
            self.by_status[key] = self.by_status.get(key, 0) + 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "by_status": dict(sorted(self.by_status.items())),
                "faults": self.faults,
                "faults_by_kind": dict(sorted(self.faults_by_kind.items())),
                "moves_applied": self.moves_applied,
                "records": len(self.records),
            }

    def reset_stats(self) -> None:
        """Zero the counters, restart fault and move numbering at 1, empty the rate window.

        Moved records stay where they are; the moves fire again from request 1.
        """
        with self.lock:
            self.requests = 0
            self.by_status = {}
            self.faults = 0
            self.faults_by_kind = {}
            self.moves_applied = 0
            self._moves_through = 0
            self.epoch += 1
            self.limiter.reset()

    # -- data

    def _ordered(self) -> list[dict[str, Any]]:
        """The records in the configured API order (the end-date view is kept per generation)."""
        if self.config.order == "id":
            return self.records
        if self._by_end_date is None or self._by_end_date[0] != self.generation:
            self._by_end_date = (self.generation, sorted(self.records, key=_end_date_key))
        return self._by_end_date[1]

    def matching(self, filters: _Filters) -> list[dict[str, Any]]:
        """Filtered records for ``filters``, through a small LRU keyed by the fingerprint."""
        with self.lock:
            key = (self.generation, self.config.bounds, self.config.order, filters)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            result = _filter_records(self._ordered(), filters, self.config.bounds)
            self._cache[key] = result
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
            return result

    def describe(self) -> dict[str, Any]:
        with self.lock:
            cfg = self.config
            return {
                "bounds": cfg.bounds,
                "requests_per_minute": cfg.requests_per_minute,
                "faults": cfg.faults.to_dict() if cfg.faults is not None else None,
                "slow_seconds": cfg.slow_seconds,
                "redirect_url": cfg.redirect_url,
                "seed": cfg.seed,
                "records": len(self.records),
                "start": cfg.start.isoformat(),
                "end": cfg.end.isoformat(),
                "order": cfg.order,
                "moves": [move.to_dict() for move in cfg.moves],
            }

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate every change first, then apply them all (or none) under the lock."""
        unknown = sorted(set(changes) - _CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        with self.lock:
            cfg = self.config
            updates: dict[str, Any] = {}
            if "bounds" in changes:
                updates["bounds"] = _validate_bounds(changes["bounds"])
            if "requests_per_minute" in changes:
                updates["requests_per_minute"] = _validate_non_negative_int(
                    "requests_per_minute", changes["requests_per_minute"]
                )
            if "faults" in changes:
                updates["faults"] = _coerce_faults(changes["faults"])
            if "slow_seconds" in changes:
                updates["slow_seconds"] = _validate_seconds("slow_seconds", changes["slow_seconds"])
            if "redirect_url" in changes:
                updates["redirect_url"] = _validate_url(changes["redirect_url"])
            if "order" in changes:
                updates["order"] = _validate_order(changes["order"])
            if "moves" in changes:
                updates["moves"] = coerce_moves(changes["moves"])
            if "seed" in changes:
                seed = changes["seed"]
                if isinstance(seed, bool) or not isinstance(seed, int):
                    raise ValueError(f"seed must be an integer, got {seed!r}")
                updates["seed"] = seed
            if "records" in changes:
                updates["records"] = _validate_non_negative_int(
                    "records", changes["records"], _MAX_RECORDS
                )
            for name in ("start", "end"):
                if name in changes:
                    updates[name] = _parse_iso_date(name, changes[name])
            delete_ids = _validate_ids(changes["delete_ids"]) if "delete_ids" in changes else None
            added: list[dict[str, Any]] | None = None
            if "add_records" in changes:
                raw = changes["add_records"]
                if not isinstance(raw, list):
                    raise ValueError("add_records must be a list of objects")
                added = [_validate_added_record(record) for record in raw]
            new_cfg = dataclasses.replace(cfg, **updates)  # re-validates start <= end

            regenerate = any(name in changes for name in ("seed", "records", "start", "end"))
            records = self.records
            if regenerate:
                records = generate_records(
                    new_cfg.seed, new_cfg.records, new_cfg.start, new_cfg.end
                )
            if delete_ids:
                records = [r for r in records if r["id"] not in delete_ids]
            if added:
                added_ids = {r["id"] for r in added}
                records = [r for r in records if r["id"] not in added_ids]
                records.extend(added)
                records.sort(key=_record_id)
            if "moves" in changes:  # later data changes may drop a moved record: skipped then
                _check_move_ids(new_cfg.moves, records)

            self.config = new_cfg
            self.limiter.requests_per_minute = new_cfg.requests_per_minute
            if records is not self.records:
                self.records = records
                self.generation += 1
                self._cache.clear()
            return self.describe()


# --------------------------------------------------------------------------- HTTP layer


class _SandboxHTTPServer(ThreadingHTTPServer):
    """Threading server that does not wait for idle keep-alive clients when closing."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: _SandboxState, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for
        # seconds on hosts without DNS; the sandbox does not need a server name.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return  # the client went away; nothing to report
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive sockets."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One connection; dispatches API requests and the ``/_sandbox/`` admin endpoints."""

    protocol_version = "HTTP/1.1"
    server_version = "LuccaSandbox/0.1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120

    def version_string(self) -> str:
        return self.server_version

    @property
    def sandbox(self) -> _SandboxHTTPServer:
        return cast(_SandboxHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        with self.sandbox.connections_lock:
            self.sandbox.connections.add(self.connection)

    def finish(self) -> None:
        with self.sandbox.connections_lock:
            self.sandbox.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.sandbox.state.config.verbose:
            super().log_message(format, *args)

    # -- responses

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        api: bool = True,
    ) -> None:
        if api:
            # Count before writing: a client that has read the answer sees it in the stats.
            self.sandbox.state.count_status(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, payload: object, api: bool = False) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8", api=api)

    def _send_problem(
        self,
        status: int,
        detail: str,
        slug: str = "",
        headers: Iterable[tuple[str, str]] = (),
        api: bool = True,
    ) -> None:
        phrase = HTTPStatus(status).phrase
        problem = {
            "type": f"urn:lucca-sandbox:problem:{slug or phrase.lower().replace(' ', '-')}",
            "title": phrase,
            "status": status,
            "detail": detail,
        }
        body = json.dumps(problem, ensure_ascii=False).encode()
        self._send(status, body, "application/problem+json", headers, api=api)

    # -- dispatch

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _read_body(self) -> bytes:
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        if not _INT_RE.fullmatch(length_header.strip()):
            raise _ProblemError(400, "Invalid Content-Length.")
        length = int(length_header)
        if length > _MAX_ADMIN_BODY:
            self.close_connection = True
            raise _ProblemError(413, "Request body too large.")
        return self.rfile.read(length)

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        admin = path.startswith(ADMIN_PREFIX)
        self._ticket: tuple[int, int] | None = None
        try:
            if admin and self.command != "GET":
                # Before reading the body: an unauthenticated client uploads nothing.
                self._authorize_admin()
            body = self._read_body()
            if admin:
                self._admin(path, body)
            else:
                self._api(path, query)
        except _ProblemError as error:
            self._send_problem(error.status, error.detail, error.slug, error.headers, api=not admin)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._send_problem(500, "Unexpected sandbox error (see its stderr).", api=not admin)
        finally:
            if self._ticket is not None:
                self.sandbox.state.end_api_request(*self._ticket)

    def _authorize_admin(self) -> None:
        """Require ``Authorization: Bearer <admin token>`` (compared in constant time)."""
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        expected = self.sandbox.state.admin_token.encode()
        # Header values are decoded as latin-1 by http.server: encoding back gives the bytes.
        given = credentials.strip().encode("latin-1", "replace")
        if scheme.lower() == "bearer" and hmac.compare_digest(given, expected):
            return
        self.close_connection = True  # the body, if any, is left unread
        raise _ProblemError(
            401,
            "Missing or invalid admin token: send 'Authorization: Bearer <admin token>' "
            "(see --admin-token / LUCCA_SANDBOX_ADMIN_TOKEN, or the token printed at start).",
            headers=[("WWW-Authenticate", 'Bearer realm="lucca-sandbox"'), ("Connection", "close")],
        )

    # -- API

    def _api(self, path: str, query: str) -> None:
        state = self.sandbox.state
        epoch, number, fault = state.begin_api_request()
        self._ticket = (epoch, number)
        if fault is not None and self._fault(fault):
            return
        retry_after = state.limiter.admit()
        if retry_after is not None:
            self._send_problem(
                429,
                "Rate limit exceeded for this tenant; respect Retry-After.",
                "rate-limited",
                [("Retry-After", str(retry_after))],
            )
            return
        if path != API_PATH:
            raise _ProblemError(404, "No such endpoint in the Lucca sandbox.")
        if self.command != "GET":
            self._send_problem(405, "Only GET is supported here.", headers=[("Allow", "GET")])
            return
        expected = "lucca application=" + state.config.api_key
        if self.headers.get("Authorization") != expected:
            raise _ProblemError(
                401,
                "Missing or invalid API key: send 'Authorization: lucca application=<api_key>'.",
            )
        request = _parse_query(query)
        self._serve_page(request)

    def _serve_page(self, request: _PageRequest) -> None:
        matching = self.sandbox.state.matching(request.filters)
        total = len(matching)
        offset, limit = request.offset, request.limit
        payload: dict[str, Any] = {"items": matching[offset : offset + limit]}
        fingerprint = request.filters.fingerprint() if request.fields else ""
        if "prev" in request.fields:
            has_prev = offset > 0 and limit > 0
            payload["prev"] = (
                _encode_cursor(max(0, min(offset, total) - limit), fingerprint)
                if has_prev
                else None
            )
        if "next" in request.fields:
            # No trailing empty page: the page that reaches the total has no next. With
            # limit=0 a next cursor would point at the same offset forever, so none either.
            has_next = limit > 0 and offset + limit < total
            payload["next"] = _encode_cursor(offset + limit, fingerprint) if has_next else None
        if "count" in request.fields:
            payload["count"] = total
        self._send_json(200, payload, api=True)

    def _fault(self, kind: str) -> bool:
        """Play fault ``kind``; return True when the response has been handled."""
        config = self.sandbox.state.config
        if kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if kind == "slow":
            time.sleep(config.slow_seconds)
            return False
        if kind == "html":
            self._send(200, _HTML_ERROR_PAGE, "text/html; charset=utf-8")
            return True
        if kind == "redirect":
            base = config.redirect_url
            if base is None:
                base = "http://" + (self.headers.get("Host") or _format_host_port(self.server))
            self._send(302, b"", "text/plain; charset=utf-8", [("Location", base + self.path)])
            return True
        if kind.startswith("429"):
            headers: list[tuple[str, str]] = []
            if kind == "429":
                headers.append(("Retry-After", "1"))
            elif kind == "429-long":
                headers.append(("Retry-After", "3600"))
            elif kind == "429-date":
                headers.append(("Retry-After", formatdate(math.ceil(time.time()) + 2, usegmt=True)))
            self._send_problem(429, "Too many requests (injected fault).", "rate-limited", headers)
            return True
        status = int(kind)
        self._send_problem(status, f"Injected fault: {HTTPStatus(status).phrase}.", "injected")
        return True

    # -- admin

    def _admin(self, path: str, body: bytes) -> None:
        state = self.sandbox.state
        route = (self.command, path.rstrip("/"))
        if route == ("GET", "/_sandbox/health"):
            self._send_json(200, {"status": "ok"})
        elif route == ("GET", "/_sandbox/stats"):
            self._send_json(200, state.stats())
        elif route == ("POST", "/_sandbox/reset-stats"):
            state.reset_stats()
            self._send_json(200, state.stats())
        elif route == ("GET", "/_sandbox/config"):
            self._send_json(200, state.describe())
        elif route == ("POST", "/_sandbox/config"):
            try:
                changes = json.loads(body or b"{}")
            except ValueError:
                raise _ProblemError(400, "The body must be a JSON object.") from None
            if not isinstance(changes, dict):
                raise _ProblemError(400, "The body must be a JSON object.")
            try:
                self._send_json(200, state.configure(changes))
            except ValueError as error:
                raise _ProblemError(400, str(error), "invalid-config") from None
        else:
            raise _ProblemError(404, "Unknown sandbox admin endpoint.")


def _format_host_port(server: Any) -> str:
    host, port = server.server_address[:2]
    host = _connect_host(str(host))
    return f"{host}:{port}"


def _connect_host(host: str) -> str:
    """Host to reach a server bound on ``host`` (wildcards mean loopback for local tools)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


# --------------------------------------------------------------------------- public API


class SandboxServer:
    """In-process Lucca sandbox serving from a daemon thread.

    Use it as a context manager in tests (``with SandboxServer(cfg) as server``) or call
    :meth:`start` / :meth:`stop`. The dataset is generated in the constructor, so
    :attr:`records` is available before the server listens.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._state = _SandboxState(config or SandboxConfig())
        self._httpd: _SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> SandboxServer:
        """Bind the socket and serve in a daemon thread; idempotent."""
        if self._httpd is not None:
            return self
        cfg = self._state.config
        host = cfg.host.strip("[]")
        httpd = _SandboxHTTPServer((host, cfg.port), self._state, ipv6=":" in host)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"lucca-sandbox-{httpd.server_port}",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the listening socket; idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def host(self) -> str:
        """The configured bind host (may be a wildcard such as 0.0.0.0)."""
        return self._state.config.host

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when the config says 0)."""
        if self._httpd is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL reachable from this host, e.g. ``http://127.0.0.1:8089``."""
        return f"http://{_connect_host(self.host.strip('[]'))}:{self.port}"

    @property
    def api_url(self) -> str:
        """Full URL of the realized-trainings endpoint."""
        return self.url + API_PATH

    @property
    def config(self) -> SandboxConfig:
        """Current settings (reflects :meth:`configure`)."""
        return self._state.config

    @property
    def admin_token(self) -> str:
        """Token of the mutating admin endpoints (``Authorization: Bearer <token>``).

        The configured ``admin_token``, or the random one generated when it was None.
        :meth:`configure` and :meth:`reset_stats` need none: they do not go through HTTP.
        """
        return self._state.admin_token

    # -- data and tooling

    @property
    def records(self) -> list[dict[str, Any]]:
        """The current dataset in id order, scheduled moves included (whatever the API order).

        Read-only: records share their training dicts, and a move replaces the list and the
        moved record instead of changing them, so a list read earlier stays as it was.
        """
        return self._state.records

    def stats(self) -> dict[str, Any]:
        """Same payload as ``GET /_sandbox/stats``."""
        return self._state.stats()

    def reset_stats(self) -> None:
        """Same as ``POST /_sandbox/reset-stats``: counters, fault/move numbering, rate window."""
        self._state.reset_stats()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Same keys as ``POST /_sandbox/config``; returns the effective settings.

        ``faults`` may be a :class:`FaultSchedule`, its dict shape or None; ``moves`` a list of
        :class:`RecordMove` or their dict shape (``{"id", "to", "after_request", "every"}``);
        ``start`` and ``end`` may be dates or ``YYYY-MM-DD`` strings. Raises ValueError on
        invalid input, leaving the sandbox unchanged.
        """
        return self._state.configure(changes)
