"""`make demo FORMAT=delta|iceberg` end to end: the table equals the sandbox's data and the
demo prints one commit per run (a file of its own, so the suite's workers run it beside
test_demo.py)."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from lucca_sandbox.data import generate_records
from tests.test_demo import run_demo

#: The demo's sandbox (scripts/demo.py): the CLI's seed 42, 20,000 records over 2024-2025.
DEMO_RECORDS = (42, 20000, date(2024, 1, 1), date(2025, 12, 31))
#: What DEMO_ARGS extract: the history [2025-01-01, 2025-03-01), then 2025-03-01 and 02.
EXTRACTED = (date(2025, 1, 1), date(2025, 3, 3))
#: The runs' windows (the daily runs' include their 7-day lookback), newest first.
RUN_WINDOWS = [
    "[2025-02-23, 2025-03-03)",
    "[2025-02-22, 2025-03-02)",
    "[2025-01-01, 2025-03-01)",
]


def truth() -> list[dict[str, Any]]:
    """The sandbox's records of the extracted days, as JSON gives them (numbers exact)."""
    first, until = (day.isoformat() for day in EXTRACTED)
    records = [
        json.loads(json.dumps(record), parse_float=Decimal)
        for record in generate_records(*DEMO_RECORDS)
        if first <= record["sessionEndsOn"] < until
    ]
    return sorted((without_nulls(record) for record in records), key=lambda r: r["id"])


def as_records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Table rows as the records they were received as: dates as text, ``_extra`` merged,
    nulls dropped (a typed column cannot tell a null from a field Lucca did not send)."""
    records = []
    for row in rows:
        assert row.pop("session_end_on") == row["sessionEndsOn"]  # the partition: its day
        extra = row.pop("_extra")
        record = {
            key: value.isoformat() if isinstance(value, date) else value
            for key, value in row.items()
        }
        record.update(json.loads(extra, parse_float=Decimal) if extra else {})
        records.append(without_nulls(record))
    return sorted(records, key=lambda record: record["id"])


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    return value


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["delta", "iceberg"])
def test_demo_writes_a_table_equal_to_the_sandbox_and_prints_its_history(
    tmp_path: Path, file_format: str
) -> None:
    output = run_demo(tmp_path, "--format", file_format)

    if file_format == "delta":
        import deltalake

        table = deltalake.DeltaTable(tmp_path / "lake" / "lucca" / "realized_trainings_delta")
        rows = table.to_pyarrow_table().to_pylist()
        runs = [entry for entry in table.history() if "lucca.run_token" in entry]
        assert "Table history (DeltaTable.history(), DESCRIBE HISTORY), newest first:" in output
    else:
        from pyiceberg.catalog import load_catalog

        home = tmp_path / "iceberg"
        catalog = load_catalog(
            "iceberg_demo",
            type="sql",
            uri=f"sqlite:///{home / 'catalog.db'}",
            warehouse=(home / "warehouse").as_uri(),
        )
        table = catalog.load_table("lucca.realized_trainings")
        rows = table.scan().to_arrow().to_pylist()
        runs = [
            snapshot.summary.additional_properties
            for snapshot in reversed(table.snapshots())
            if "lucca.run_token" in snapshot.summary.additional_properties
        ]
        assert "Snapshot log (snapshot summaries), newest first:" in output
    expected = truth()
    assert len(expected) > 1500
    assert as_records(rows) == expected

    # One commit per run, newest first, each with its window and records, in the table and in
    # what the demo printed.
    assert [f"[{run['lucca.window_from']}, {run['lucca.window_until']})" for run in runs] == (
        RUN_WINDOWS
    )
    history = output[output.index("newest first:") :]
    lines = [line for line in history.splitlines() if "[2025-" in line]
    assert [line.split("  ")[-1] for line in lines] == [run["lucca.run_id"] for run in runs]
    for line, run, window in zip(lines, runs, RUN_WINDOWS, strict=True):
        assert window in line
        assert f" {run['lucca.records']} " in line
    assert f"lucca.run_token          {runs[0]['lucca.run_token']}" in history
    assert "Reports (training hours per employee and month)" in output
