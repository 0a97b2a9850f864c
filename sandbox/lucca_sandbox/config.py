"""What shapes the sandbox: :class:`SandboxConfig` and the validation of every setting.

The same validators check the constructor's arguments, the CLI (through the constructor) and the
body of ``POST /_sandbox/config`` (:func:`validate_changes`), so a setting is refused with the
same message wherever it comes from, and a refused change leaves the sandbox as it was.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from .faults import FaultSchedule
from .moves import RecordMove, coerce_moves

__all__ = [
    "BOUNDS",
    "DEFAULT_API_KEY",
    "MAX_RECORDS",
    "ORDERS",
    "RUNTIME_SETTINGS",
    "ConfigChanges",
    "SandboxConfig",
    "is_loopback",
    "parse_iso_date",
    "validate_changes",
]

BOUNDS = ("exclusive", "inclusive")
#: Item order of the API: by id (stable pages), or by sessionEndsOn then id (pages that shift
#: when an end date changes mid-run, like a server that orders by date with offset cursors).
ORDERS = ("id", "end_date")
#: The API key everyone knows; refused together with a non-loopback bind.
DEFAULT_API_KEY = "sandbox-api-key"
MAX_RECORDS = 10_000_000

DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TOKEN_RE = re.compile(r"[\x21-\x7e]+")

#: The keys ``POST /_sandbox/config`` (and ``SandboxServer.configure``) accept.
RUNTIME_SETTINGS = frozenset(
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
        "timeout_window_days",
        "timeout_records",
        "timeout_delay_seconds",
    }
)


# --------------------------------------------------------------------------- field validators


def validate_bounds(value: object) -> str:
    if value not in BOUNDS:
        raise ValueError(f"bounds must be one of {', '.join(BOUNDS)}, got {value!r}")
    return str(value)


def validate_order(value: object) -> str:
    if value not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {value!r}")
    return str(value)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; wildcards and names are not."""
    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def validate_admin_token(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _TOKEN_RE.fullmatch(value):
        raise ValueError("admin_token must be a non-empty string of visible ASCII characters")
    return value


def validate_non_negative_int(name: str, value: object, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return value


def validate_optional_limit(name: str, value: object) -> int | None:
    """An optional threshold: None (off) or an integer >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0 or null, got {value!r}")
    return value


def validate_seconds(name: str, value: object) -> float:
    # JSON bodies may carry NaN or Infinity (Python's json accepts them): time.sleep would not.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def validate_url(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"redirect_url must be an http(s) URL or null, got {value!r}")
    return value.rstrip("/")


def parse_iso_date(name: str, value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and DATE_RE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name} must be a YYYY-MM-DD date, got {value!r}")


def coerce_faults(value: object) -> FaultSchedule | None:
    if value is None or isinstance(value, FaultSchedule):
        return value
    if isinstance(value, Mapping):
        return FaultSchedule.from_dict(value)
    raise ValueError("faults must be a FaultSchedule, an object or null")


def validate_ids(value: object) -> set[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError("delete_ids must be a list of integers")
    ids: set[int] = set()
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int):
            raise ValueError(f"delete_ids must be a list of integers, got {item!r}")
        ids.add(item)
    return ids


def validate_added_record(record: object) -> dict[str, Any]:
    """Accept any shape a test wants to inject, as long as the server can index it."""
    if not isinstance(record, dict):
        raise ValueError("add_records must be a list of objects")
    record_id = record.get("id")
    if isinstance(record_id, bool) or not isinstance(record_id, int) or record_id < 1:
        raise ValueError(f"added records need an integer id >= 1, got {record_id!r}")
    parse_iso_date("sessionEndsOn", record.get("sessionEndsOn"))
    return record


# --------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class SandboxConfig:
    """Everything that shapes the sandbox; the defaults are what the demo and tests expect.

    ``port=0`` asks the OS for a free port (read it back from ``SandboxServer.port``).
    ``bounds`` selects how ``sessionEndOnAfter``/``sessionEndOnBefore`` are read, because
    Lucca does not document it for v2 and clients must be right under both readings.
    ``order`` is ``"id"`` or ``"end_date"`` (see :data:`ORDERS`); ``moves`` are
    :class:`~.moves.RecordMove` (or their dict shape) applied as API requests are answered.
    ``timeout_window_days`` and ``timeout_records`` make the API answer 408 like Lucca does to a
    request it gave up on after 5 s (see :mod:`.timeouts`), ``timeout_delay_seconds`` after
    that long; None turns a threshold off.

    The sandbox is a development tool: it refuses a ``host`` that is not a loopback address
    unless ``allow_remote`` is set and ``api_key`` is not :data:`DEFAULT_API_KEY`. The admin
    endpoints that change it need ``admin_token`` (``Authorization: Bearer <token>``); when it
    is None the server generates one (read it from ``SandboxServer.admin_token``).
    """

    seed: int = 42
    records: int = 2000
    start: date = date(2025, 1, 1)
    end: date = date(2025, 12, 31)
    api_key: str = DEFAULT_API_KEY
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
    timeout_window_days: int | None = None
    timeout_records: int | None = None
    timeout_delay_seconds: float = 0.0

    def __post_init__(self) -> None:
        validate_bounds(self.bounds)
        validate_order(self.order)
        object.__setattr__(self, "moves", coerce_moves(self.moves))
        validate_admin_token(self.admin_token)
        validate_non_negative_int("records", self.records, MAX_RECORDS)
        validate_non_negative_int("requests_per_minute", self.requests_per_minute)
        validate_non_negative_int("port", self.port, 65535)
        validate_seconds("slow_seconds", self.slow_seconds)
        validate_optional_limit("timeout_window_days", self.timeout_window_days)
        validate_optional_limit("timeout_records", self.timeout_records)
        object.__setattr__(
            self,
            "timeout_delay_seconds",
            validate_seconds("timeout_delay_seconds", self.timeout_delay_seconds),
        )
        object.__setattr__(self, "start", parse_iso_date("start", self.start))
        object.__setattr__(self, "end", parse_iso_date("end", self.end))
        object.__setattr__(self, "faults", coerce_faults(self.faults))
        object.__setattr__(self, "redirect_url", validate_url(self.redirect_url))
        if self.start > self.end:
            raise ValueError("start must be on or before end")
        if not self.api_key:
            raise ValueError("api_key must not be empty")
        if not is_loopback(self.host):
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


# --------------------------------------------------------------------------- runtime changes


@dataclass(frozen=True)
class ConfigChanges:
    """A validated ``POST /_sandbox/config`` body, ready to apply (see ``SandboxState``).

    ``config`` is the new configuration; ``regenerate`` says whether the dataset must be
    generated again from it; ``delete_ids`` and ``added`` are the record edits, applied after.
    """

    config: SandboxConfig
    regenerate: bool
    delete_ids: set[int] | None
    added: list[dict[str, Any]] | None


def validate_changes(config: SandboxConfig, changes: Mapping[str, Any]) -> ConfigChanges:
    """Validate every change against ``config``; raise ValueError on the first invalid one."""
    unknown = sorted(set(changes) - RUNTIME_SETTINGS)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
    updates: dict[str, Any] = {}
    if "bounds" in changes:
        updates["bounds"] = validate_bounds(changes["bounds"])
    if "requests_per_minute" in changes:
        updates["requests_per_minute"] = validate_non_negative_int(
            "requests_per_minute", changes["requests_per_minute"]
        )
    if "faults" in changes:
        updates["faults"] = coerce_faults(changes["faults"])
    if "slow_seconds" in changes:
        updates["slow_seconds"] = validate_seconds("slow_seconds", changes["slow_seconds"])
    if "redirect_url" in changes:
        updates["redirect_url"] = validate_url(changes["redirect_url"])
    if "order" in changes:
        updates["order"] = validate_order(changes["order"])
    for name in ("timeout_window_days", "timeout_records"):
        if name in changes:
            updates[name] = validate_optional_limit(name, changes[name])
    if "timeout_delay_seconds" in changes:
        updates["timeout_delay_seconds"] = validate_seconds(
            "timeout_delay_seconds", changes["timeout_delay_seconds"]
        )
    if "moves" in changes:
        updates["moves"] = coerce_moves(changes["moves"])
    if "seed" in changes:
        seed = changes["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        updates["seed"] = seed
    if "records" in changes:
        updates["records"] = validate_non_negative_int("records", changes["records"], MAX_RECORDS)
    for name in ("start", "end"):
        if name in changes:
            updates[name] = parse_iso_date(name, changes[name])
    delete_ids = validate_ids(changes["delete_ids"]) if "delete_ids" in changes else None
    added: list[dict[str, Any]] | None = None
    if "add_records" in changes:
        raw = changes["add_records"]
        if not isinstance(raw, list):
            raise ValueError("add_records must be a list of objects")
        added = [validate_added_record(record) for record in raw]
    return ConfigChanges(
        config=dataclasses.replace(config, **updates),  # re-validates start <= end
        regenerate=any(name in changes for name in ("seed", "records", "start", "end")),
        delete_ids=delete_ids,
        added=added,
    )
