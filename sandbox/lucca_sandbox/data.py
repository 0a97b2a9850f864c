"""Deterministic generator of Lucca ``v2.RealizedTraining`` records.

The sandbox must exercise the same corner cases as a real tenant (accents and very long
titles, CSV imports without demand/session, non-attended sessions, two-decimal durations,
end dates that are unrelated to the id order), and it must do so reproducibly: a test or a
benchmark that fails has to be replayable from its seed alone. Everything here is therefore
driven by one ``random.Random(seed)`` and plain data, with no dependency: the training
catalogue is the package's ``catalogue.json``.
"""

from __future__ import annotations

import bisect
import gc
import json
import random
from dataclasses import dataclass
from datetime import date, timedelta
from importlib import resources
from typing import Any

__all__ = ["TRAINING_CATALOGUE", "CatalogueTraining", "generate_records"]


@dataclass(frozen=True)
class CatalogueTraining:
    """One entry of the fake training catalogue (``catalogue.json``).

    ``days`` is the usual session length and ``hours_per_day`` the usual daily load; the
    generator perturbs both so that durations look like the hand-typed values of a real
    tenant rather than a neat multiple of seven.
    """

    id: int
    title: str
    category_id: int
    provider_url: str
    level: str
    days: int
    hours_per_day: float
    popularity: float


#: The catalogue file, shipped in the package (its entries' order is part of every seed's data).
CATALOGUE_FILE = "catalogue.json"

_CATALOGUE_FIELDS: dict[str, tuple[type, ...]] = {
    "id": (int,),
    "title": (str,),
    "category_id": (int,),
    "provider_url": (str,),
    "level": (str,),
    "days": (int,),
    "hours_per_day": (int, float),
    "popularity": (int, float),
}


def load_catalogue(text: str) -> tuple[CatalogueTraining, ...]:
    """Parse the catalogue file's JSON (``{"trainings": [{...}, ...]}``), checking every field.

    Numbers are kept as written (``7`` stays an int, ``3.5`` a float). Raises ValueError on a
    malformed file, naming the entry.
    """
    document = json.loads(text)
    entries = document.get("trainings") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError("the training catalogue needs a non-empty 'trainings' list")
    trainings: list[CatalogueTraining] = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != set(_CATALOGUE_FIELDS):
            raise ValueError(
                f"training catalogue entry {position} must have exactly the keys "
                f"{', '.join(_CATALOGUE_FIELDS)}, got {entry!r}"
            )
        for name, types in _CATALOGUE_FIELDS.items():
            value = entry[name]
            if isinstance(value, bool) or not isinstance(value, types):
                raise ValueError(
                    f"training catalogue entry {position}: {name!r} has the wrong type: {value!r}"
                )
        trainings.append(CatalogueTraining(**entry))
    return tuple(trainings)


TRAINING_CATALOGUE: tuple[CatalogueTraining, ...] = load_catalogue(
    resources.files("lucca_sandbox").joinpath(CATALOGUE_FILE).read_text(encoding="utf-8")
)

_EMPLOYEE_POOL_SIZE = 320
_EMPLOYEE_ID_SPACE = 2400
_CSV_IMPORT_RATE = 0.15
_NOT_ATTENDED_RATE = 0.10


def _duration(rng: random.Random, training: CatalogueTraining, days: int) -> int | float:
    """Return a duration in hours with at most two decimals, as a JSON-friendly number.

    Durations are built in integer cents so that ``2.35`` really serialises as ``2.35``
    (``235 / 100`` is the closest double and its ``repr`` is the shortest round trip); whole
    hours are emitted as ints, as Lucca does in its own example (``14``).
    """
    roll = rng.random()
    if roll < 0.70:
        cents = round(days * training.hours_per_day * 100)
    elif roll < 0.90:
        # A session cut short or extended by a fraction of an hour.
        cents = round(days * training.hours_per_day * 100) + (int(rng.random() * 9) - 4) * 25
    else:
        # A hand-typed value from a CSV import or an e-learning module.
        cents = 50 + int(rng.random() * days * 800)
    cents = max(cents, 25)
    return cents // 100 if cents % 100 == 0 else cents / 100


def generate_records(seed: int, count: int, start: date, end: date) -> list[dict[str, Any]]:
    """Generate ``count`` realized trainings whose ``sessionEndsOn`` lies in ``[start, end]``.

    The result is sorted by ``id`` (the order the sandbox serves), while end dates are drawn
    independently of ids so that consumers cannot get away with assuming date order. The
    ``training`` dicts are shared between records of the same training to keep 500,000
    records affordable in memory: treat the records as read-only.

    Args:
        seed: PRNG seed; the same seed (and arguments) always yields identical records.
        count: number of records (>= 0).
        start: first possible ``sessionEndsOn`` (inclusive).
        end: last possible ``sessionEndsOn`` (inclusive).
    """
    if count < 0:
        raise ValueError("count must be >= 0")
    if start > end:
        raise ValueError("start must be on or before end")
    # Half a million fresh dicts would trigger many useless cyclic-GC passes (the records
    # hold no cycles); pausing the collector saves about a fifth of the time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(seed, count, start, end)
    finally:
        if gc_was_enabled:
            gc.enable()


def _generate(seed: int, count: int, start: date, end: date) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rand = rng.random

    n_days = (end - start).days + 1
    # Sessions may start up to 4 days before ``start``: precompute every date string once.
    iso_days = [(start + timedelta(days=i - 4)).isoformat() for i in range(n_days + 4)]

    catalogue = TRAINING_CATALOGUE
    n_trainings = len(catalogue)
    training_dicts = [
        {
            "id": t.id,
            "title": t.title,
            "categoryId": t.category_id,
            "providerUrl": t.provider_url,
            "level": t.level,
        }
        for t in catalogue
    ]
    cumulative: list[float] = []
    total_weight = 0.0
    for t in catalogue:
        total_weight += t.popularity
        cumulative.append(total_weight)

    employees = sorted(rng.sample(range(1, _EMPLOYEE_ID_SPACE + 1), _EMPLOYEE_POOL_SIZE))
    n_employees = len(employees)

    # Lucca forbids two realized trainings with the same (employee, training, end date);
    # honour it when possible, and give up after a few draws on absurdly dense requests.
    seen_keys: set[int] = set()
    sessions: dict[int, int] = {}
    next_session_id = 100 + int(rand() * 50)
    next_demand_id = 4000 + int(rand() * 500)
    record_id = 1 + int(rand() * 200)

    records: list[dict[str, Any]] = []
    append = records.append
    for _ in range(count):
        t_index = bisect.bisect_right(cumulative, rand() * total_weight)
        if t_index >= n_trainings:
            t_index = n_trainings - 1
        training = catalogue[t_index]
        end_day = int(rand() * n_days)
        owner_index = int(rand() * n_employees)
        for _attempt in range(6):
            key = (owner_index * n_trainings + t_index) * n_days + end_day
            if key not in seen_keys:
                break
            owner_index = int(rand() * n_employees)
        seen_keys.add(key)

        days = training.days
        jitter = rand()
        if jitter < 0.15 and days > 1:
            days -= 1
        elif jitter > 0.90 and days < 5:
            days += 1
        start_day = end_day - days + 1

        record: dict[str, Any] = {
            "id": record_id,
            "ownerId": employees[owner_index],
            "training": training_dicts[t_index],
        }
        kind = rand()
        if kind < _CSV_IMPORT_RATE:
            # CSV imports carry no demand nor session; Lucca emits either nothing or null.
            if kind < _CSV_IMPORT_RATE / 2:
                record["trainingDemandId"] = None
                record["sessionId"] = None
        else:
            next_demand_id += 1 + int(rand() * 7)
            session_key = (t_index * (n_days + 4) + start_day + 4) * 8 + days
            session_id = sessions.get(session_key)
            if session_id is None:
                next_session_id += 1 + int(rand() * 3)
                session_id = sessions[session_key] = next_session_id
            record["trainingDemandId"] = next_demand_id
            record["sessionId"] = session_id
        record["sessionStartsOn"] = iso_days[start_day + 4]
        record["sessionEndsOn"] = iso_days[end_day + 4]
        record["hasAttended"] = rand() >= _NOT_ATTENDED_RATE
        record["durationInHours"] = _duration(rng, training, days)
        append(record)

        # Ids increase with gaps: deleted records and other tenants' rows leave holes.
        gap = rand()
        record_id += 1 if gap < 0.80 else 2 + int(gap * 40) % 17
    return records
