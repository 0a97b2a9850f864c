"""Child process of the Delta sink's crash and race tests in ``test_delta_sink.py``.

Extracts a window from a Lucca sandbox into a Delta table through :class:`DeltaSink`, and can stop
at one named point of the write and commit until the test decides: it prints
``{"at": <point>}`` on stdout, then blocks reading a line from stdin (``go`` goes on; the test may
also SIGKILL it there). No timing is involved: the test reads the line, acts, and answers.

Usage: ``python tests/delta_child.py '<json>'`` with the keys ``url``, ``api_key``, ``uri``,
``storage_options``, ``start``, ``until``, ``lookback`` and ``point``, one of:

- ``none``: no stop;
- ``in-stream``: after ``batches`` Arrow batches of the window were handed to the writer (the
  sink's first pass over ``WindowRows.batches``);
- ``mid-stream``: the same, and a ``write_deltalake`` call gets a 1-byte target file size, so
  that data files of those batches are written already;
- ``before-commit``: right before the sink's first call into delta-rs that commits
  (``write_deltalake``, ``DeltaTable.create_write_transaction`` or
  ``create_table_with_add_actions``), with the table as the sink last opened it: the race
  tests' barrier (both runs hold the table's current version, then both go);
- ``after-commit``: right after ``DeltaSink.commit`` returned (its log entry is written), before
  the run reports.

The points hook the sink's seams (delta-rs's commit calls, ``DeltaSink.commit``, the rows it
streams), so that they hold whether the sink writes through ``write_deltalake`` or writes its
files and commits them itself.

At the end it prints ``{"summary": <the run's summary>, "commit_seconds": <DeltaSink.commit's
duration>}`` and leaves with ``os._exit`` (the
interpreter's own exit may abort after deltalake and pyarrow threads ran: not what is tested).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import date
from typing import Any

import deltalake
from deltalake import transaction

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import table as table_module
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink
from airflow_provider_lucca.extraction.window import DateWindow

#: How long the sink's commit took (what the figures report).
TIMINGS: dict[str, float] = {}


def hold(point: str) -> None:
    """Tell the test where we are, then wait for its ``go`` (or its SIGKILL)."""
    print(json.dumps({"at": point, "pid": os.getpid()}), flush=True)
    answer = sys.stdin.readline().strip()
    if answer != "go":
        os._exit(3)


def install(point: str, batches: int) -> None:
    first = {"commit": True, "batches": True}

    def before_commit(call: Any) -> Any:
        def held(*args: Any, **kwargs: Any) -> Any:
            if point == "before-commit" and first["commit"]:
                first["commit"] = False
                hold(point)
            if point == "mid-stream" and call is write:
                kwargs["target_file_size"] = 1  # data files go out while the batches stream
            return call(*args, **kwargs)

        return held

    write = deltalake.write_deltalake
    deltalake.write_deltalake = before_commit(write)
    deltalake.DeltaTable.create_write_transaction = before_commit(  # type: ignore[method-assign]
        deltalake.DeltaTable.create_write_transaction
    )
    transaction.create_table_with_add_actions = before_commit(
        transaction.create_table_with_add_actions
    )

    commit = DeltaSink.commit

    def committed(self: DeltaSink, *args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        result = commit(self, *args, **kwargs)
        TIMINGS["commit_seconds"] = round(time.monotonic() - started, 3)
        if point == "after-commit":
            hold(point)
        return result

    DeltaSink.commit = committed  # type: ignore[method-assign]

    original = table_module.WindowRows.batches

    def held_batches(self: Any) -> Iterator[Any]:
        stop = point in ("in-stream", "mid-stream") and first["batches"]
        first["batches"] = False
        for number, batch in enumerate(original(self), start=1):
            yield batch
            if stop and number == batches:
                hold(point)

    table_module.WindowRows.batches = held_batches  # type: ignore[method-assign]


def main(spec: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    install(spec["point"], int(spec.get("batches", 0)))
    config = ClientConfig(
        base_url=spec["url"], api_key=spec["api_key"], requests_per_minute=0, page_size=100
    )
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(spec["start"]), date.fromisoformat(spec["until"])),
        lookback_days=int(spec.get("lookback", 0)),
    )
    sink = DeltaSink(spec["uri"], spec.get("storage_options") or {})
    with LuccaClient(config) as client:
        summary = extract_realized_trainings(
            client, request, sink, log=logging.getLogger("delta_child"), run_id=spec.get("run_id")
        )
    print(json.dumps({"summary": summary, **TIMINGS}), flush=True)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
