"""The sandbox's data: a seed's records are pinned, and the catalogue file is checked on load.

The training catalogue is package data (``lucca_sandbox/catalogue.json``); the generator reads it
in order, so editing, adding or reordering an entry changes every seed's dataset. The digest below
makes such a change visible: update it on purpose, with the reason in the commit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date

import pytest

from lucca_sandbox import TRAINING_CATALOGUE, generate_records
from lucca_sandbox.data import CatalogueTraining, load_catalogue

#: sha256 of ``generate_records(42, 2000, 2025-01-01, 2025-12-31)`` as compact UTF-8 JSON.
SEED_42_DIGEST = "3490048da3c16085b47ae5faf52d665d97569427072f3e32bdad63992aa133d3"


def digest(records: list[dict[str, object]]) -> str:
    text = json.dumps(records, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def test_a_seed_always_yields_the_same_records() -> None:
    records = generate_records(42, 2000, date(2025, 1, 1), date(2025, 12, 31))
    assert digest(records) == SEED_42_DIGEST


def test_the_catalogue_is_read_from_the_package_data() -> None:
    assert len(TRAINING_CATALOGUE) == 41
    assert len({training.id for training in TRAINING_CATALOGUE}) == 41
    first = TRAINING_CATALOGUE[0]
    assert first == CatalogueTraining(
        45,
        "Mastering French: From Basics to Fluency",
        1,
        "https://elan-francais.fr",
        "Beginner",
        2,
        7,
        3.0,
    )
    assert isinstance(first.hours_per_day, int)  # numbers stay as the file writes them


ENTRY = {
    "id": 1,
    "title": "Formation",
    "category_id": 2,
    "provider_url": "https://example.test",
    "level": "Beginner",
    "days": 1,
    "hours_per_day": 3.5,
    "popularity": 1,
}


def test_a_valid_catalogue_file_loads() -> None:
    (training,) = load_catalogue(json.dumps({"trainings": [ENTRY]}))
    assert training == CatalogueTraining(
        1, "Formation", 2, "https://example.test", "Beginner", 1, 3.5, 1
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "non-empty 'trainings'"),
        ({"trainings": []}, "non-empty 'trainings'"),
        ({"trainings": [["not", "an", "object"]]}, "entry 0 must have exactly the keys"),
        ({"trainings": [{**ENTRY, "extra": 1}]}, "entry 0 must have exactly the keys"),
        ({"trainings": [{k: v for k, v in ENTRY.items() if k != "days"}]}, "exactly the keys"),
        ({"trainings": [ENTRY, {**ENTRY, "days": "2"}]}, "entry 1: 'days' has the wrong type"),
        ({"trainings": [{**ENTRY, "id": True}]}, "entry 0: 'id' has the wrong type"),
        ({"trainings": [{**ENTRY, "popularity": None}]}, "'popularity' has the wrong type"),
    ],
)
def test_a_malformed_catalogue_file_is_refused_naming_the_entry(
    document: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_catalogue(json.dumps(document))
