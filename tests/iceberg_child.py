"""Child process of the crash and race tests in ``test_iceberg_sink.py``.

Extracts one window from a Lucca sandbox into an Iceberg table, and stops at chosen points of the
write and commit: at a ``hold`` point it writes a marker file and sleeps until the test kills it
(SIGKILL); at a ``gate`` it writes a ready file and waits for a go file (so that two children
commit at the same moment), then goes on.

Usage: ``python tests/iceberg_child.py '<json>'`` with the keys ``url``, ``api_key``,
``catalog`` (pyiceberg catalog properties), ``table``, ``start``, ``until``, and optionally
``hold`` (a point) with ``marker``, and ``gates`` (a list of ``{"at": point, "ready": path,
"go": path}``), and ``chunk_rows`` (the sink's ``CHUNK_ROWS``: small, the run writes its data
files in several steps). Points:

- ``mid-data-files``: two data files of the run are written, others not yet (with a small
  ``chunk_rows``);
- ``before-commit``: every data file is written, the catalog commit not started;
- ``metadata-written``: the new metadata file is written, the catalog still points at the old;
- ``after-commit``: the catalog points at the run's snapshot; the run has not returned yet;
- ``create-namespace`` / ``create-table`` (gates only): before creating them on a first run.

On success it prints the run's summary as one JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import date
from typing import Any

from pyiceberg.catalog import sql as sql_catalog
from pyiceberg.io import pyarrow as pyiceberg_pyarrow
from pyiceberg.table import Transaction

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import iceberg
from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink
from airflow_provider_lucca.extraction.window import DateWindow

HOLD_SECONDS = 120
GATE_SECONDS = 60


def write_marker(path: str) -> None:
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(temporary, path)


def hold(marker: str) -> None:
    """Tell the test we are at the chosen point, then wait to be killed."""
    write_marker(marker)
    time.sleep(HOLD_SECONDS)
    sys.exit("iceberg_child: was not killed")


class Stops:
    """What to do at each point: hold there (once), or pass a gate (once)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.hold_at = spec.get("hold")
        self.marker = spec.get("marker", "")
        self.gates = {gate["at"]: gate for gate in spec.get("gates", [])}

    def reach(self, point: str) -> None:
        if point == self.hold_at:
            hold(self.marker)
        gate = self.gates.pop(point, None)
        if gate is not None:
            write_marker(gate["ready"])
            deadline = time.monotonic() + GATE_SECONDS
            while not os.path.exists(gate["go"]):
                if time.monotonic() > deadline:
                    sys.exit(f"iceberg_child: never told to go on at {point}")
                time.sleep(0.01)


def install(stops: Stops) -> None:
    write_file = pyiceberg_pyarrow.write_file
    written = {"files": 0}

    def counting_write_file(*args: Any, **kwargs: Any) -> Any:
        for data_file in list(write_file(*args, **kwargs)):
            written["files"] += 1
            yield data_file
            if written["files"] == 2:
                stops.reach("mid-data-files")

    commit_transaction = Transaction.commit_transaction

    def stopping_commit(self: Transaction) -> Any:
        stops.reach("before-commit")
        result = commit_transaction(self)
        stops.reach("after-commit")
        return result

    write_metadata: Callable[..., None] = sql_catalog.SqlCatalog._write_metadata

    def stopping_write_metadata(*args: Any, **kwargs: Any) -> None:
        write_metadata(*args, **kwargs)
        stops.reach("metadata-written")

    create_namespace = sql_catalog.SqlCatalog.create_namespace
    create_table = sql_catalog.SqlCatalog.create_table

    def gated_create_namespace(self: Any, *args: Any, **kwargs: Any) -> Any:
        stops.reach("create-namespace")
        return create_namespace(self, *args, **kwargs)

    def gated_create_table(self: Any, *args: Any, **kwargs: Any) -> Any:
        stops.reach("create-table")
        return create_table(self, *args, **kwargs)

    pyiceberg_pyarrow.write_file = counting_write_file  # type: ignore[assignment]
    Transaction.commit_transaction = stopping_commit  # type: ignore[method-assign]
    sql_catalog.SqlCatalog._write_metadata = staticmethod(stopping_write_metadata)  # type: ignore[method-assign,assignment]
    sql_catalog.SqlCatalog.create_namespace = gated_create_namespace  # type: ignore[method-assign]
    sql_catalog.SqlCatalog.create_table = gated_create_table  # type: ignore[method-assign]


def main(spec: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    install(Stops(spec))
    if "chunk_rows" in spec:
        iceberg.CHUNK_ROWS = int(spec["chunk_rows"])
    config = ClientConfig(base_url=spec["url"], api_key=spec["api_key"], requests_per_minute=0)
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(spec["start"]), date.fromisoformat(spec["until"]))
    )
    sink = IcebergSink(spec["catalog"], spec["table"], catalog_name="lucca")
    with LuccaClient(config) as client:
        summary = extract_realized_trainings(
            client, request, sink, log=logging.getLogger("iceberg_child")
        )
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
