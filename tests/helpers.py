"""Helpers shared by the test modules (fixtures are in conftest.py).

Import them as ``from tests.helpers import ...``. Never import ``tests.conftest``: pytest has
already loaded it as ``conftest``, and a second import runs it again (a new ``AIRFLOW_HOME``).

:func:`read_dataset` is the tests' one reader of a committed dataset, independent of the
provider's own reader: it follows the manifests only and checks every size, sha256 and count.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient, RetryPolicy
from lucca_sandbox import DEFAULT_API_KEY

#: The sandbox's API key (``SandboxConfig``'s default).
SANDBOX_KEY = DEFAULT_API_KEY
MANIFEST = "_manifest.json"
PARTITION_PREFIX = "session_end_on="

#: Two attempts with millisecond waits: a test of a failure gets it at once.
QUICK_RETRY = RetryPolicy(
    max_attempts=2, backoff_base=0.01, backoff_max=0.02, rate_limit_min_wait=0.01, jitter=0.0
)

Root = Path | ObjectStoragePath


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lucca_conn_json(url: str, key: str = SANDBOX_KEY, **extra: object) -> str:
    """An ``AIRFLOW_CONN_*`` value for a Lucca connection to ``url``, unpaced unless ``extra``
    says otherwise."""
    return json.dumps(
        {
            "conn_type": "lucca",
            "host": url,
            "password": key,
            "extra": {"requests_per_minute": 0, **extra},
        }
    )


def client_for(
    url: str, *, api_key: str, logger: logging.Logger | None = None, **config: Any
) -> LuccaClient:
    """An unpaced client that gives up quickly (:data:`QUICK_RETRY`); ``config`` overrides."""
    settings: dict[str, Any] = {"requests_per_minute": 0, "retry": QUICK_RETRY, **config}
    return LuccaClient(ClientConfig(base_url=url, api_key=api_key, **settings), logger=logger)


def tree(root: Root) -> dict[str, bytes]:
    """Every file under a local dataset root (relative path -> bytes), listed in a manifest or
    not, hidden and temporary ones included; empty when the root does not exist."""
    local = Path(root.path) if isinstance(root, ObjectStoragePath) else root
    if not local.exists():
        return {}
    return {
        str(path.relative_to(local)): path.read_bytes()
        for path in sorted(local.rglob("*"))
        if path.is_file()
    }


def read_dataset(root: Root, *, sort_by_id: bool = True) -> dict[str, list[dict[str, Any]]]:
    """What a reader that follows manifests sees: day -> records, for every day with a manifest.

    Only the files a manifest lists are opened, and each must match the manifest's size, sha256
    and record count; the day's records must add up to its ``record_count``, and the manifest
    must name the partition it is in. Records come sorted by id (duplicates kept), or in file
    order with ``sort_by_id=False``. ``root`` is a local ``Path`` or any ``ObjectStoragePath``.
    """
    result: dict[str, list[dict[str, Any]]] = {}
    if not root.exists():
        return result
    for directory in sorted(root.iterdir(), key=lambda path: path.name):
        manifest_path = directory / MANIFEST
        if not directory.name.startswith(PARTITION_PREFIX) or not manifest_path.exists():
            continue  # not a partition, or a day never committed
        manifest = json.loads(manifest_path.read_bytes())
        day = manifest["partition"]["session_end_on"]
        assert directory.name == f"{PARTITION_PREFIX}{day}", (directory.name, day)
        records: list[dict[str, Any]] = []
        for entry in manifest["files"]:
            data = (directory / entry["name"]).read_bytes()
            assert len(data) == entry["bytes"], entry
            assert hashlib.sha256(data).hexdigest() == entry["sha256"], entry
            part = decode_part(entry["name"], data)
            assert len(part) == entry["records"], entry
            records.extend(part)
        assert len(records) == manifest["record_count"], (day, manifest["record_count"])
        result[day] = sorted(records, key=lambda r: r["id"]) if sort_by_id else records
    return result


def decode_part(name: str, data: bytes) -> list[dict[str, Any]]:
    """The records of one part file, by its extension: JSON lines as parsed, Parquet rows."""
    if name.endswith(".jsonl.gz"):
        # split on "\n" only: JSON strings may hold U+2028 and other line separators raw.
        text = gzip.decompress(data).decode("utf-8")
        return [json.loads(line) for line in text.split("\n") if line]
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()  # type: ignore[no-any-return]
    raise AssertionError(f"unexpected part file {name}")


# --------------------------------------------------------------------------- sandbox request log

import urllib.request  # noqa: E402
from collections.abc import Sequence  # noqa: E402


def max_requests_in_any_window(times: Sequence[float], window: float = 60.0) -> int:
    """The most requests that fall inside any one window of ``window`` seconds.

    Windows are those of the sandbox's limiter (:class:`~lucca_sandbox.RateLimiter`): the window
    that ends at ``t`` holds the requests in ``(t - window, t]``, so two requests exactly
    ``window`` seconds apart are never in the same one. Hence, for a limit ``L``, the limiter
    admits every request of ``times`` exactly when this is at most ``L`` (pinned by a property
    test). Pass the arrival times that count: a budget proof counts every request, answered 429
    or not; ``times`` need not be sorted.
    """
    if not window > 0:
        raise ValueError(f"window must be > 0 seconds, got {window!r}")
    ordered = sorted(times)
    best = 0
    first = 0
    for last, now in enumerate(ordered):
        window_start = now - window  # the limiter's own arithmetic, so float ties agree
        while ordered[first] <= window_start:
            first += 1
        best = max(best, last - first + 1)
    return best


def sandbox_request_log(url: str, admin_token: str | None = None) -> list[dict[str, Any]]:
    """The sandbox's request log (``GET <url>/_sandbox/requests``): every API request it answered
    since its start or last ``reset-stats``, in arrival order, as ``{"at", "status", "path",
    "query"}``. The endpoint is open like ``stats``; ``admin_token`` is sent when given, for
    callers that hold one anyway. Fails when the sandbox dropped old entries: a proof over part of
    the requests proves nothing.
    """
    headers = {"Authorization": f"Bearer {admin_token}"} if admin_token else {}
    request = urllib.request.Request(url.rstrip("/") + "/_sandbox/requests", headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        payload = json.load(response)
    assert payload["dropped"] == 0, (
        f"the sandbox at {url} dropped {payload['dropped']} old log entries: reset it "
        "(POST /_sandbox/reset-stats) before the run to be proven"
    )
    requests: list[dict[str, Any]] = payload["requests"]
    return requests


def run_child(dag_file: Path, home: Path, **env_vars: str) -> tuple[dict[str, Any], str]:
    """``python dag_file`` with its own AIRFLOW_HOME; its result line, and its output."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **env_vars,
    }
    child = subprocess.run(
        [sys.executable, str(dag_file)],
        env=env,
        capture_output=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    logs = child.stdout.decode("utf-8", "replace") + child.stderr.decode("utf-8", "replace")
    results = [line for line in logs.splitlines() if line.startswith("LUCCA-TEST-RESULT ")]
    assert child.returncode == 0, logs[-5000:]
    assert results, logs[-5000:]
    return json.loads(results[-1].removeprefix("LUCCA-TEST-RESULT ")), logs


#: The members of a realized training as the sandbox (and Lucca's spec) sends them, in order.
RECORD_FIELDS = (
    "id",
    "ownerId",
    "training",
    "trainingDemandId",
    "sessionId",
    "sessionStartsOn",
    "sessionEndsOn",
    "hasAttended",
    "durationInHours",
)


def moto_client(endpoint: str) -> Any:
    """A boto3 S3 client of the tests' moto server (its fixed test credentials)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )


def moto_options(endpoint: str) -> dict[str, str]:
    """delta-rs / object_store options for the tests' moto server."""
    return {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }
