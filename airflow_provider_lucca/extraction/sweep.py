"""Remove what no manifest lists: parts of runs that were killed, and other leftovers.

Readers that follow manifests never see such files, but engines that list files under the prefix
(Athena, Trino, ``read_json('root/*/*.jsonl.gz')``) read them as rows. A failed run removes its own
parts; a killed one cannot, and its parts stay until a later run commits the same days. The sweep
removes them sooner, under the dataset lock (so it never races a run's upload), and only files
older than a threshold as a second guard.
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import date

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.commit import (
    MANIFEST_NAME,
    MANIFEST_VERSION,
    PARTITION_KEY,
    read_manifest,
)
from airflow_provider_lucca.extraction.lock import DatasetLock, LockPolicy
from airflow_provider_lucca.extraction.storage import StoragePath, list_fresh, modified_at

_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass
class SweepResult:
    removed: list[str] = field(default_factory=list)
    kept_recent: int = 0
    partitions: int = 0


def sweep_unlisted(
    base: StoragePath,
    *,
    older_than_seconds: float,
    log: Logger,
    lock_policy: LockPolicy | None = None,
) -> SweepResult:
    """Delete files of ``session_end_on=`` partitions that their manifest does not list, once
    they are older than ``older_than_seconds``; a partition whose manifest cannot be read is left
    alone."""
    result = SweepResult()
    token = uuid.uuid4().hex[:12]
    lock = DatasetLock(base, token, run_id="sweep", policy=lock_policy or LockPolicy(), log=log)
    with lock:
        now = time.time()
        for directory in _partitions(base):
            result.partitions += 1
            day = date.fromisoformat(directory.name.split("=", 1)[1])
            try:
                manifest = read_manifest(base, day)
            except ValueError as exc:
                log.warning("Skipping %s: its manifest is not JSON (%s)", directory, exc)
                continue
            names = listed_names(manifest)
            if names is None:
                log.warning("Skipping %s: its manifest is not one this version writes", directory)
                continue
            listed = {MANIFEST_NAME} | names
            for entry in list_fresh(directory):
                if entry.name in listed:
                    continue
                if now - modified_at(entry) < older_than_seconds:
                    result.kept_recent += 1
                    continue
                lock.check()
                entry.unlink(missing_ok=True)
                result.removed.append(f"{directory.name}/{entry.name}")
    log.info(
        "Swept %s: removed %d unlisted files in %d partitions (%d recent ones kept)",
        base,
        len(result.removed),
        result.partitions,
        result.kept_recent,
    )
    return result


def listed_names(manifest: object) -> set[str] | None:
    """The file names a manifest lists; an empty set for a day never committed (no manifest);
    None for anything this version did not write, so that nothing is deleted on a guess."""
    if manifest is None:
        return set()
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
        return None
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in files
    ):
        return None
    return {entry["name"] for entry in files}


def _partitions(base: StoragePath) -> list[StoragePath]:
    try:
        entries = list_fresh(base)
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        prefix, _, value = entry.name.partition("=")
        if prefix != PARTITION_KEY or not _ISO_DAY.fullmatch(value):
            continue
        try:
            date.fromisoformat(value)
        except ValueError:
            continue
        found.append(entry)
    return sorted(found, key=lambda entry: entry.name)
