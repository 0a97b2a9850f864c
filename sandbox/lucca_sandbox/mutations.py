"""Seeded mutations of old history: late CSV imports, deletions and attendance flips.

A real tenant's history is not frozen: an HR admin imports a CSV of last year's trainings, deletes
a row entered twice, or corrects ``hasAttended``, and none of it carries an updated-at. A client
that reconciles old history (count probes, drill-down) must be proven against exactly that, and a
failing proof must replay: the same seed on the same dataset picks the same records and draws the
same imports. Nothing here touches the server; :meth:`.state.SandboxState.mutate` applies the
result like any other data change.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .config import parse_iso_date
from .data import _NOT_ATTENDED_RATE, TRAINING_CATALOGUE, CatalogueTraining, _duration

__all__ = ["MUTATION_KEYS", "MutationSpec", "apply_mutations", "parse_mutation_spec"]

#: The keys of a ``POST /_sandbox/mutate`` body (and of ``SandboxServer.mutate``).
MUTATION_KEYS = frozenset(
    {"seed", "inserts", "deletions", "flips", "from", "until", "delete_ids", "flip_ids"}
)
#: The keys of ``--mutations`` (the explicit id lists are for tests, over HTTP or in Python).
CLI_KEYS = ("seed", "inserts", "deletions", "flips", "from", "until")
#: Most records one call may insert: a typo must not allocate millions of records.
MAX_INSERTS = 1_000_000
_EMPLOYEE_ID_SPACE = 2400  # as data.py: owners of an empty dataset are drawn from it
_DRAWS_PER_INSERT = 6  # tries to avoid an existing (owner, training, end date)


@dataclass(frozen=True)
class MutationSpec:
    """A validated mutation request.

    ``inserts``, ``deletions`` and ``flips`` are counts drawn with ``random.Random(seed)`` among
    the records whose ``sessionEndsOn`` is in ``[start, until)`` (None: the dataset's
    ``start .. end + 1 day``); ``delete_ids`` and ``flip_ids`` name records explicitly, wherever
    they end, and the counts are drawn among the others.
    """

    seed: int = 0
    inserts: int = 0
    deletions: int = 0
    flips: int = 0
    start: date | None = None
    until: date | None = None
    delete_ids: tuple[int, ...] = ()
    flip_ids: tuple[int, ...] = ()

    @classmethod
    def from_mapping(cls, body: Mapping[str, Any]) -> MutationSpec:
        """Validate a body's shape; raise ValueError naming the first bad key."""
        unknown = sorted(map(str, set(body) - MUTATION_KEYS))
        if unknown:
            raise ValueError(
                f"mutate: unknown key(s) {', '.join(unknown)} "
                f"(expected {', '.join(sorted(MUTATION_KEYS))})"
            )
        seed = body.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"mutate: 'seed' must be an integer, got {seed!r}")
        counts = {
            name: _count(name, body.get(name, 0), MAX_INSERTS if name == "inserts" else None)
            for name in ("inserts", "deletions", "flips")
        }
        start = _optional_date("from", body.get("from"))
        until = _optional_date("until", body.get("until"))
        if start is not None and until is not None and start >= until:
            raise ValueError(
                f"mutate: 'from' ({start}) must be before 'until' ({until}): the range is "
                "half-open, [from, until)"
            )
        delete_ids = _ids("delete_ids", body.get("delete_ids", ()))
        flip_ids = _ids("flip_ids", body.get("flip_ids", ()))
        both = sorted(set(delete_ids) & set(flip_ids))
        if both:
            raise ValueError(f"mutate: id {both[0]} is in both delete_ids and flip_ids")
        return cls(
            seed=seed,
            start=start,
            until=until,
            delete_ids=delete_ids,
            flip_ids=flip_ids,
            **counts,
        )

    def to_dict(self) -> dict[str, Any]:
        """The body shape (``from``/``until`` as strings, omitted when None)."""
        body: dict[str, Any] = {
            "seed": self.seed,
            "inserts": self.inserts,
            "deletions": self.deletions,
            "flips": self.flips,
        }
        if self.start is not None:
            body["from"] = self.start.isoformat()
        if self.until is not None:
            body["until"] = self.until.isoformat()
        if self.delete_ids:
            body["delete_ids"] = list(self.delete_ids)
        if self.flip_ids:
            body["flip_ids"] = list(self.flip_ids)
        return body


def _count(name: str, value: object, maximum: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"mutate: {name!r} must be an integer >= 0, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"mutate: {name!r} must be <= {maximum}, got {value!r}")
    return value


def _optional_date(name: str, value: object) -> date | None:
    if value is None:
        return None
    try:
        return parse_iso_date(name, value)
    except ValueError:
        raise ValueError(f"mutate: {name!r} must be a YYYY-MM-DD date, got {value!r}") from None


def _ids(name: str, value: object) -> tuple[int, ...]:
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise ValueError(f"mutate: {name!r} must be a list of record ids, got {value!r}")
    ids: list[int] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < 1:
            raise ValueError(f"mutate: {name!r} must hold integer ids >= 1, got {item!r}")
        if item in ids:
            raise ValueError(f"mutate: {name!r} lists id {item} twice")
        ids.append(item)
    return tuple(ids)


def parse_mutation_spec(text: str) -> MutationSpec:
    """Parse ``--mutations inserts=5,deletions=3,flips=4,seed=7[,from=...,until=...]``.

    Raises ValueError naming the bad part (``'inserts=x'``) and what it should be.
    """
    body: dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in CLI_KEYS:
            raise ValueError(
                f"{part.strip()!r} is not KEY=VALUE with KEY one of {', '.join(CLI_KEYS)} "
                "(e.g. inserts=5,deletions=3,flips=4,seed=7,from=2024-01-01,until=2025-01-01)"
            )
        if key in body:
            raise ValueError(f"{part.strip()!r}: {key} is given twice")
        if key in ("from", "until"):
            body[key] = value
        else:
            try:
                body[key] = int(value)
            except ValueError:
                raise ValueError(f"{part.strip()!r}: {key} must be an integer") from None
    try:
        return MutationSpec.from_mapping(body)
    except ValueError as error:
        raise ValueError(str(error).removeprefix("mutate: ")) from None


# --------------------------------------------------------------------------- applying


def _record_id(record: Mapping[str, Any]) -> int:
    return int(record["id"])


def _change(kind: str, record: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "id": record["id"],
        "sessionEndsOn": record["sessionEndsOn"],
        "hasAttended": record.get("hasAttended", True) is not False,
    }


def _index(records: list[dict[str, Any]], record_id: int, name: str) -> int:
    index = bisect.bisect_left(records, record_id, key=_record_id)
    if index == len(records) or records[index]["id"] != record_id:
        raise ValueError(f"mutate: {name}: no record with id {record_id}")
    return index


def _training_dict(training: CatalogueTraining) -> dict[str, Any]:
    return {
        "id": training.id,
        "title": training.title,
        "categoryId": training.category_id,
        "providerUrl": training.provider_url,
        "level": training.level,
    }


def _late_import(
    rng: random.Random,
    record_id: int,
    start: date,
    n_days: int,
    owners: list[int],
    taken: set[tuple[object, object, str]],
) -> dict[str, Any]:
    """One CSV-imported record ending in ``[start, start + n_days)``, shaped like data.py's."""
    weights = [training.popularity for training in TRAINING_CATALOGUE]
    for _attempt in range(_DRAWS_PER_INSERT):
        training = rng.choices(TRAINING_CATALOGUE, weights)[0]
        owner = rng.choice(owners) if owners else 1 + int(rng.random() * _EMPLOYEE_ID_SPACE)
        end = start + timedelta(days=int(rng.random() * n_days))
        key = (owner, training.id, end.isoformat())
        if key not in taken:
            break
    taken.add(key)
    days = training.days
    jitter = rng.random()
    if jitter < 0.15 and days > 1:
        days -= 1
    elif jitter > 0.90 and days < 5:
        days += 1
    record: dict[str, Any] = {"id": record_id, "ownerId": owner}
    record["training"] = _training_dict(training)
    # A CSV import carries no demand nor session: Lucca emits either nothing or null.
    if rng.random() < 0.5:
        record["trainingDemandId"] = None
        record["sessionId"] = None
    record["sessionStartsOn"] = (end - timedelta(days=days - 1)).isoformat()
    record["sessionEndsOn"] = end.isoformat()
    record["hasAttended"] = rng.random() >= _NOT_ATTENDED_RATE
    record["durationInHours"] = _duration(rng, training, days)
    return record


def apply_mutations(
    records: list[dict[str, Any]],
    spec: MutationSpec,
    *,
    default_start: date,
    default_until: date,
    next_id: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return ``(new records in id order, changes)``; ``records`` and its dicts are not touched.

    Deletions are drawn first, then flips among the records left, then the imports (ids from
    ``next_id`` up, with the gaps of a shared id sequence). ``changes`` lists the deletions,
    the flips and the inserts, each in id order, as ``{"kind", "id", "sessionEndsOn",
    "hasAttended"}`` (after the change; a deletion's as it was). Raises ValueError, before
    building anything, on an unknown id or a count larger than the candidates.
    """
    start = spec.start if spec.start is not None else default_start
    until = spec.until if spec.until is not None else default_until
    if start >= until:
        raise ValueError(
            f"mutate: the range [from, until) = [{start}, {until}) is empty; give both bounds"
        )
    delete_index = [_index(records, i, "delete_ids") for i in spec.delete_ids]
    flip_index = [_index(records, i, "flip_ids") for i in spec.flip_ids]
    explicit = set(delete_index) | set(flip_index)
    first, stop = start.isoformat(), until.isoformat()
    candidates = [
        index
        for index, record in enumerate(records)
        if first <= record["sessionEndsOn"] < stop and index not in explicit
    ]
    rng = random.Random(spec.seed)
    for name, wanted in (("deletions", spec.deletions), ("flips", spec.flips)):
        if wanted > len(candidates):
            raise ValueError(
                f"mutate: {name}={wanted}, but only {len(candidates)} records end in "
                f"[{start}, {until}) (besides the explicit ids and the records already drawn)"
            )
        drawn = rng.sample(candidates, wanted)
        (delete_index if name == "deletions" else flip_index).extend(drawn)
        chosen = set(drawn)
        candidates = [index for index in candidates if index not in chosen]

    deleted = set(delete_index)
    flipped = set(flip_index)
    changes = [_change("delete", records[index]) for index in sorted(deleted)]
    result: list[dict[str, Any]] = []
    for index, record in enumerate(records):
        if index in deleted:
            continue
        if index in flipped:
            record = {**record, "hasAttended": record.get("hasAttended", True) is False}
            changes.append(_change("flip", record))
        result.append(record)

    if spec.inserts:
        owners = sorted({r["ownerId"] for r in records if isinstance(r.get("ownerId"), int)})
        taken = {(r.get("ownerId"), _training_id(r), r["sessionEndsOn"]) for r in records}
        n_days = (until - start).days
        record_id = next_id
        for _ in range(spec.inserts):
            record = _late_import(rng, record_id, start, n_days, owners, taken)
            result.append(record)
            changes.append(_change("insert", record))
            gap = rng.random()
            record_id += 1 if gap < 0.80 else 2 + int(gap * 40) % 17
    return result, changes


def _training_id(record: Mapping[str, Any]) -> object:
    training = record.get("training")
    return training.get("id") if isinstance(training, Mapping) else None
