"""Read committed partitions back the way every reader should: through their manifests only.

Files a manifest does not list (a run in progress, an orphan of a crashed run) are never read, and
each listed file is checked against its size and sha256 before it is trusted.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

from airflow_provider_lucca.client.errors import LuccaError
from airflow_provider_lucca.extraction.commit import (
    Manifest,
    ManifestFile,
    partition_dir,
    read_manifest,
)
from airflow_provider_lucca.extraction.storage import StoragePath


class PartitionIntegrityError(LuccaError):
    """A committed partition does not match its manifest, or was never extracted."""


def read_partition(
    base: StoragePath, day: date, manifest: Manifest | None = None
) -> Iterator[dict[str, Any]]:
    """Records of one committed day, numbers as exact ``Decimal`` for JSON lines.

    Parquet rows come back with pyarrow's types (``date``, ``Decimal``); columns are named as in
    the API. Pass the day's ``manifest`` if it is already read (one GET less on object stores).
    """
    manifest = manifest or _manifest(base, day)
    for entry in manifest["files"]:
        data = _verified_bytes(base, day, entry)
        if manifest["file_format"] == "parquet":
            import pyarrow.parquet as pq

            rows = pq.read_table(io.BytesIO(data)).to_pylist()
        else:
            # split on "\n" only: str.splitlines() also breaks on U+2028 and other separators
            # that JSON strings may hold raw.
            lines = gzip.decompress(data).split(b"\n")
            rows = [json.loads(line, parse_float=Decimal) for line in lines if line]
        if len(rows) != entry["records"]:
            raise PartitionIntegrityError(
                f"{partition_dir(base, day)}/{entry['name']}: {len(rows)} records, the manifest "
                f"says {entry['records']}."
            )
        yield from rows


def verify_partition(base: StoragePath, day: date) -> int:
    """Check every file of a day against its manifest; return the day's record count."""
    manifest = _manifest(base, day)
    count = sum(1 for _ in read_partition(base, day, manifest))
    expected = manifest["record_count"]
    if count != expected:
        raise PartitionIntegrityError(
            f"{partition_dir(base, day)}: {count} records in its files, manifest says {expected}."
        )
    return count


def _manifest(base: StoragePath, day: date) -> Manifest:
    manifest = read_manifest(base, day)
    if manifest is None:
        raise PartitionIntegrityError(
            f"{partition_dir(base, day)} has no manifest: never extracted."
        )
    return manifest


def _verified_bytes(base: StoragePath, day: date, entry: ManifestFile) -> bytes:
    path = partition_dir(base, day) / entry["name"]
    try:
        data: bytes = path.read_bytes()
    except FileNotFoundError:
        raise PartitionIntegrityError(f"{path} is listed in its manifest but missing.") from None
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise PartitionIntegrityError(f"{path} does not match the size or sha256 of its manifest.")
    return data
