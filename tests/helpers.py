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
import socket
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
