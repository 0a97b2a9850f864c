"""Child process of the crash tests in ``test_reliability.py``.

Extracts a window from a Lucca sandbox into a local dataset, and stops dead at one step of the
commit protocol: it writes a marker file, then sleeps until the test kills it with SIGKILL.

Usage: ``python tests/crash_child.py '<json>'`` with the keys ``url``, ``api_key``, ``output``
(a ``file://`` URL), ``start``, ``until``, ``marker`` and ``point``, one of:

- ``mid-part``: the second part file is half written (the first one is complete);
- ``before-manifest``: every part is written, no manifest yet;
- ``mid-manifests``: the first day's manifest is written, the others not;
- ``before-cleanup``: every manifest is written, the previous run's files not yet removed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import types
from datetime import date
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction import commit
from airflow_provider_lucca.extraction.lock import DEFAULT_LOCK_LEASE, LockPolicy
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow

HOLD_SECONDS = 120


def hold(marker: str) -> None:
    """Tell the test we are at the chosen point, then wait to be killed."""
    temporary = marker + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(str(os.getpid()))
    os.replace(temporary, marker)
    time.sleep(HOLD_SECONDS)
    sys.exit("crash_child: was not killed")


def install(point: str, marker: str) -> None:
    calls = {"copy": 0, "manifest": 0}
    copyfileobj = commit.shutil.copyfileobj
    write_whole = commit.write_whole

    def copy_part(source: Any, sink: Any, length: int = 0) -> None:
        calls["copy"] += 1
        if point == "mid-part" and calls["copy"] == 2:
            data = source.read()
            sink.write(data[: len(data) // 2])
            sink.flush()
            hold(marker)
        copyfileobj(source, sink, length)

    def write_manifest(path: Any, data: bytes) -> None:
        calls["manifest"] += 1
        if (point == "before-manifest" and calls["manifest"] == 1) or (
            point == "mid-manifests" and calls["manifest"] == 2
        ):
            hold(marker)
        write_whole(path, data)

    def remove_unlisted(directory: Any, keep: set[str]) -> None:
        hold(marker)

    commit.shutil = types.SimpleNamespace(copyfileobj=copy_part)  # type: ignore[assignment]
    commit.write_whole = write_manifest  # type: ignore[assignment]
    if point == "before-cleanup":
        commit.remove_unlisted = remove_unlisted  # type: ignore[assignment]


def main(spec: dict[str, str]) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    install(spec["point"], spec["marker"])
    config = ClientConfig(base_url=spec["url"], api_key=spec["api_key"], requests_per_minute=0)
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(spec["start"]), date.fromisoformat(spec["until"]))
    )
    with LuccaClient(config) as client:
        extract_realized_trainings(
            client,
            request,
            ObjectStoragePath(spec["output"]),
            log=logging.getLogger("child"),
            lock_policy=LockPolicy(lease=float(spec.get("lease", DEFAULT_LOCK_LEASE))),
        )
    sys.exit("crash_child: the extraction finished without reaching the crash point")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
