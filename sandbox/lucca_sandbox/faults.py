"""Deterministic fault schedule for the Lucca sandbox.

Retry and pacing code is only trustworthy if every failure it claims to survive can be
replayed. A schedule therefore decides the fault of API request ``n`` (1-based, counted by
the server) from ``n`` alone: explicit faults win, otherwise a hash of ``(seed, n)`` is
compared with ``rate``. No shared PRNG state means concurrent requests, retries and resets
cannot shift the sequence.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "FaultSchedule", "parse_fault_kinds", "parse_fault_spec"]

#: Every fault the server knows how to produce, with what the client sees.
FAULT_KINDS: dict[str, str] = {
    "429": "429 with Retry-After: 1",
    "429-date": "429 with Retry-After as an HTTP-date about 2 s ahead",
    "429-none": "429 without Retry-After",
    "429-long": "429 with Retry-After: 3600",
    "500": "500 problem+json",
    "502": "502 problem+json",
    "503": "503 problem+json",
    "504": "504 problem+json",
    "408": "408 problem+json (Lucca aborts requests running over 5 s)",
    "drop": "connection closed without any response",
    "slow": "answer normally after sleeping slow_seconds",
    "html": "200 text/html error page (a proxy or maintenance page)",
    "redirect": "302 to redirect_url + original path and query",
}


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
    return kind


@dataclass(frozen=True)
class FaultSchedule:
    """Which API requests fail, and how.

    Attributes:
        at: explicit faults by 1-based API request number, e.g. ``{3: "503", 5: "drop"}``.
        rate: probability (0..1) that any other request gets a fault drawn from ``kinds``.
        kinds: fault kinds used by ``rate``.
        seed: seed of the per-request draw, so that two runs see the same faults.
    """

    at: Mapping[int, str] = field(default_factory=dict)
    rate: float = 0.0
    kinds: Sequence[str] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        at: dict[int, str] = {}
        for number, kind in dict(self.at).items():
            if isinstance(number, bool) or not isinstance(number, int) or number < 1:
                raise ValueError(f"fault request numbers must be integers >= 1, got {number!r}")
            at[number] = _check_kind(kind)
        kinds = tuple(_check_kind(kind) for kind in self.kinds)
        if isinstance(self.rate, bool) or not isinstance(self.rate, int | float):
            raise ValueError(f"fault rate must be a number, got {self.rate!r}")
        if not 0.0 <= float(self.rate) <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, got {self.rate!r}")
        if self.rate > 0 and not kinds:
            raise ValueError("a fault rate needs at least one fault kind")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"fault seed must be an integer, got {self.seed!r}")
        # Frozen dataclass: normalise through object.__setattr__ so callers may pass lists.
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "rate", float(self.rate))

    def fault_for(self, number: int) -> str | None:
        """Return the fault kind for API request ``number`` (1-based), or None."""
        explicit = self.at.get(number)
        if explicit is not None:
            return explicit
        if self.rate <= 0.0 or not self.kinds:
            return None
        digest = hashlib.blake2b(f"{self.seed}:{number}".encode(), digest_size=16).digest()
        draw = int.from_bytes(digest[:8], "big") / 2.0**64
        if draw >= self.rate:
            return None
        return self.kinds[int.from_bytes(digest[8:], "big") % len(self.kinds)]

    def to_dict(self) -> dict[str, Any]:
        """JSON shape used by ``POST /_sandbox/config`` (request numbers as strings)."""
        return {
            "at": {str(number): kind for number, kind in sorted(self.at.items())},
            "rate": self.rate,
            "kinds": list(self.kinds),
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FaultSchedule:
        """Build a schedule from its JSON shape; raise ValueError on anything unexpected."""
        if not isinstance(data, Mapping):
            raise ValueError("faults must be an object or null")
        unknown = set(data) - {"at", "rate", "kinds", "seed"}
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        raw_at = data.get("at") or {}
        if not isinstance(raw_at, Mapping):
            raise ValueError("faults.at must be an object mapping request numbers to kinds")
        at: dict[int, str] = {}
        for key, kind in raw_at.items():
            try:
                number = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"fault request number {key!r} is not an integer") from None
            at[number] = kind
        kinds = data.get("kinds") or ()
        if isinstance(kinds, str) or not isinstance(kinds, Iterable):
            raise ValueError("faults.kinds must be a list of fault kinds")
        return cls(
            at=at,
            rate=data.get("rate", 0.0),
            kinds=tuple(kinds),
            seed=data.get("seed", 0),
        )


def parse_fault_spec(text: str) -> dict[int, str]:
    """Parse the CLI syntax ``3:503,5:drop`` into ``{3: "503", 5: "drop"}``."""
    at: dict[int, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        number_text, sep, kind = item.partition(":")
        if not sep or not number_text.strip().isdigit() or int(number_text) < 1:
            raise ValueError(f"expected N:KIND with N >= 1 (e.g. 3:503), got {item!r}")
        at[int(number_text)] = _check_kind(kind.strip())
    return at


def parse_fault_kinds(text: str) -> tuple[str, ...]:
    """Parse the CLI syntax ``503,429`` into a tuple of known fault kinds."""
    kinds = tuple(_check_kind(kind.strip()) for kind in text.split(",") if kind.strip())
    if not kinds:
        raise ValueError("expected at least one fault kind")
    return kinds
