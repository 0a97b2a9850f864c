"""The commit protocol of a date partition: part files first, then the manifest, then cleanup.

A reader that follows ``_manifest.json`` never sees a mix of two runs or a partial file:

1. new part files are written under names no manifest lists yet (a per-run token);
2. the manifest, which lists them with counts and checksums, is written as one whole object
   (one PUT on object stores, write-then-rename on a local disk);
3. only then are files that the manifest does not list deleted.

A run that dies before step 2 leaves the previous manifest valid; its orphan parts are removed by
the next run's step 3.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import date
from typing import Any

PARTITION_KEY = "session_end_on"
MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1
LOCAL_PROTOCOLS = ("", "file", "local")


@dataclass(frozen=True)
class PartFile:
    name: str
    records: int
    bytes: int
    sha256: str
    local_path: str

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "records": self.records,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class StagedPartition:
    """A day ready to commit: its part files on local disk, deduplicated and counted."""

    day: date
    parts: tuple[PartFile, ...]
    duplicates: int

    @property
    def records(self) -> int:
        return sum(part.records for part in self.parts)


def partition_dir(base: Any, day: date) -> Any:
    """``{base}/session_end_on=YYYY-MM-DD``: the name comes from a validated date only, never
    from data in an API answer."""
    return base / f"{PARTITION_KEY}={day.isoformat()}"


def describe_local_file(local_path: str, name: str, records: int) -> PartFile:
    digest = hashlib.sha256()
    with open(local_path, "rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return PartFile(name, records, os.path.getsize(local_path), digest.hexdigest(), local_path)


def commit_partitions(
    base: Any, staged: list[StagedPartition], manifest_fields: dict[str, Any]
) -> None:
    """Apply the three steps to every partition of a run, each step for all days before the next,
    so that a failure while uploading leaves every day on its previous manifest."""
    local = base.protocol in LOCAL_PROTOCOLS
    for partition in staged:
        target = partition_dir(base, partition.day)
        if local:
            target.mkdir(parents=True, exist_ok=True)
        for part in partition.parts:
            with open(part.local_path, "rb") as source, (target / part.name).open("wb") as sink:
                shutil.copyfileobj(source, sink, 1024 * 1024)
    for partition in staged:
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "partition": {PARTITION_KEY: partition.day.isoformat()},
            "record_count": partition.records,
            "duplicates_dropped": partition.duplicates,
            "files": [part.describe() for part in partition.parts],
            **manifest_fields,
        }
        write_whole(partition_dir(base, partition.day) / MANIFEST_NAME, _dump(manifest), local)
    for partition in staged:
        keep = {MANIFEST_NAME, *(part.name for part in partition.parts)}
        remove_unlisted(partition_dir(base, partition.day), keep)


def write_whole(path: Any, data: bytes, local: bool) -> None:
    """Make ``data`` visible at ``path`` all at once, never as a truncated object."""
    if not local:
        path.write_bytes(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary.path, path.path)


def remove_unlisted(directory: Any, keep: set[str]) -> None:
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name not in keep:
            entry.unlink(missing_ok=True)


def read_manifest(base: Any, day: date) -> dict[str, Any] | None:
    """The committed manifest of a day, or None if the day was never extracted."""
    path = partition_dir(base, day) / MANIFEST_NAME
    try:
        return json.loads(path.read_bytes())  # type: ignore[no-any-return]
    except FileNotFoundError:
        return None


def _dump(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
