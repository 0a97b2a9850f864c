"""Child process of the Delta sink's crash and race tests in ``test_delta_sink.py``.

Extracts a window from a Lucca sandbox into a Delta table through :class:`DeltaSink`, and can stop
at one named point of the write and commit until the test decides: it prints
``{"at": <point>}`` on stdout, then blocks reading a line from stdin (``go`` goes on; the test may
also SIGKILL it there). No timing is involved: the test reads the line, acts, and answers.

Usage: ``python tests/delta_child.py '<json>'`` with the keys ``url``, ``api_key``, ``uri``,
``storage_options``, ``start``, ``until``, ``lookback`` and ``point``, one of:

- ``none``: no stop;
- ``in-stream``: inside the first ``write_deltalake`` call, after ``batches`` Arrow batches of
  the window were handed to delta-rs (which has read the table's state by then);
- ``mid-stream``: the same with a 1-byte target file size, so that delta-rs has already written
  data files of those batches;
- ``before-write``: right before the first ``write_deltalake`` call, after the table was opened
  (the race tests' barrier: both runs hold the table's current version, then both go);
- ``after-commit``: right after the first ``write_deltalake`` call returned (its log entry is
  written), before the run learns its version or reports.

At the end it prints ``{"summary": <the run's summary>}`` and leaves with ``os._exit`` (the
interpreter's own exit may abort after deltalake and pyarrow threads ran: not what is tested).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from datetime import date
from typing import Any

import deltalake

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import table as table_module
from airflow_provider_lucca.extraction.sinks.delta import DeltaSink
from airflow_provider_lucca.extraction.window import DateWindow


def hold(point: str) -> None:
    """Tell the test where we are, then wait for its ``go`` (or its SIGKILL)."""
    print(json.dumps({"at": point, "pid": os.getpid()}), flush=True)
    answer = sys.stdin.readline().strip()
    if answer != "go":
        os._exit(3)


def install(point: str, batches: int) -> None:
    write = deltalake.write_deltalake
    calls = {"write": 0}

    def write_deltalake(*args: Any, **kwargs: Any) -> None:
        calls["write"] += 1
        first = calls["write"] == 1
        if point == "mid-stream":
            kwargs["target_file_size"] = 1  # data files go out while the batches stream
        if point == "before-write" and first:
            hold(point)
        write(*args, **kwargs)
        if point == "after-commit" and first:
            hold(point)

    deltalake.write_deltalake = write_deltalake

    if point in ("in-stream", "mid-stream"):
        original = table_module.WindowRows.batches

        def held_batches(self: Any) -> Iterator[Any]:
            first = calls["write"] == 1
            for number, batch in enumerate(original(self), start=1):
                yield batch
                if first and number == batches:
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
    print(json.dumps({"summary": summary}), flush=True)
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
