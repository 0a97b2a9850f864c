"""Child process of the racing-runs tests in ``test_concurrency.py``.

Waits for a start file (so that every child starts together), then runs a series of extractions
of overlapping windows into one dataset, each after a random pause, and prints one JSON summary
line per run.

Usage: ``python tests/race_child.py '<json>'`` with the keys ``url``, ``api_key``, ``output`` (a
``file://`` or ``s3://conn@bucket/prefix`` URL), ``windows`` (a list of ``[start, until]``),
``seed``, ``max_pause`` (seconds), ``ready`` (a file it creates once imported), ``go`` (the
start file's path) and ``lease``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from datetime import date

from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.lock import DatasetLock, LockPolicy
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow


def main(spec: dict[str, object]) -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rng = random.Random(int(spec["seed"]))  # type: ignore[call-overload]
    go = str(spec["go"])
    with open(str(spec["ready"]), "w"):
        pass
    deadline = time.monotonic() + 60
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("race_child: never told to start")
        time.sleep(0.01)
    config = ClientConfig(
        base_url=str(spec["url"]), api_key=str(spec["api_key"]), requests_per_minute=0, page_size=20
    )
    if not spec.get("lock", True):  # only to show that the test catches a race without the lock
        for name in ("acquire", "release", "verify", "check"):
            setattr(DatasetLock, name, lambda self: None)
    policy = LockPolicy(timeout=120, lease=float(spec["lease"]), poll=0.05)  # type: ignore[arg-type]
    output = ObjectStoragePath(str(spec["output"]))
    with LuccaClient(config) as client:
        for start, until in spec["windows"]:  # type: ignore[attr-defined]
            time.sleep(rng.uniform(0, float(spec["max_pause"])))  # type: ignore[arg-type]
            request = ExtractionRequest(
                window=DateWindow(date.fromisoformat(start), date.fromisoformat(until))
            )
            summary = extract_realized_trainings(
                client, request, output, log=logging.getLogger("race"), lock_policy=policy
            )
            print(json.dumps({"window": [start, until], "records": summary["records"]}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
