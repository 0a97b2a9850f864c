"""The commit protocol of a date partition: part files first, then the manifest, then cleanup.

A reader that follows ``_manifest.json`` never sees a mix of two runs or a partial file:

1. new part files are written under names no manifest lists yet (a per-run token);
2. the manifest, which lists them with counts and checksums, is written as one whole object
   (one PUT on object stores, write-then-rename on a local disk);
3. only then are files that the manifest does not list deleted.

A run that dies before step 2 leaves the previous manifest valid; its orphan parts are removed by
the next run's step 3 or by :func:`sweep_unlisted`. A run that fails (rather than dies) cleans up
after itself, see :func:`commit_partitions`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Final, Protocol, TypedDict

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.errors import LuccaLockError, LuccaStorageError
from airflow_provider_lucca.extraction.storage import (
    StoragePath,
    is_local,
    list_fresh,
    read_fresh,
    write_whole,
)

PARTITION_KEY: Final = "session_end_on"
MANIFEST_NAME = "_manifest.json"
MANIFEST_VERSION = 1


class ManifestFile(TypedDict):
    name: str
    records: int
    bytes: int
    sha256: str


class ManifestPartition(TypedDict):
    session_end_on: str


#: The extracted window, lookback included (``from`` is a keyword: functional syntax).
ManifestWindow = TypedDict(
    "ManifestWindow", {"from": str, "until": str, "requested_from": str, "lookback_days": int}
)


class ManifestFilters(TypedDict):
    owner_ids: list[int] | None
    has_attended: bool | None
    training_ids: list[int] | None


def manifest_filters(
    owner_ids: tuple[int, ...] | None,
    has_attended: bool | None,
    training_ids: tuple[int, ...] | None,
) -> ManifestFilters:
    """The API filters as manifests record them."""
    return {
        "owner_ids": list(owner_ids) if owner_ids else None,
        "has_attended": has_attended,
        "training_ids": list(training_ids) if training_ids else None,
    }


class ManifestApi(TypedDict):
    reported_count: int | None
    received: int


class ManifestRun(TypedDict):
    token: str
    run_id: str | None
    extracted_at: str


class RunFields(TypedDict):
    """The fields every manifest of one run shares."""

    dataset: str
    file_format: str
    window: ManifestWindow
    filters: ManifestFilters
    api: ManifestApi
    run: ManifestRun
    provider_version: str


class Manifest(RunFields):
    """A day's ``_manifest.json``: its own fields first, then the run's (see the README)."""

    manifest_version: int
    partition: ManifestPartition
    record_count: int
    #: The day's attended records (``hasAttended`` true or absent), as Lucca's
    #: ``hasAttended=true`` counts them: what the reconciliation compares without reading files.
    attended_count: int
    duplicates_dropped: int
    files: list[ManifestFile]


@dataclass(frozen=True)
class PartFile:
    name: str
    records: int
    bytes: int
    sha256: str
    local_path: str

    def describe(self) -> ManifestFile:
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
    attended: int

    @property
    def records(self) -> int:
        return sum(part.records for part in self.parts)


def partition_dir(base: StoragePath, day: date) -> StoragePath:
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
    base: StoragePath,
    staged: list[StagedPartition],
    manifest_fields: RunFields,
    *,
    lock: LockGuard | None = None,
    log: Logger | None = None,
) -> None:
    """Apply the three steps to every partition of a run, each step for all days before the next.

    The window is all-or-nothing for manifest readers as far as the store allows: a failure while
    uploading parts changes no manifest; a failure while writing manifests puts back the manifests
    the run replaced (or removes the ones it created); in both cases the run's own parts are
    removed. Only a failure of that restoration itself (the store is down), or a process killed
    between two manifests, leaves days on this run's manifests beside days on the previous ones.

    :param lock: checked before each phase and between manifests; a lost lock stops the commit.
    :raises LuccaStorageError: naming the phase and the days left on this run's manifests.
    """
    guard = lock or NoGuard()
    local = is_local(base)
    directories = {partition.day: partition_dir(base, partition.day) for partition in staged}
    uploaded: list[tuple[date, str]] = []  # path objects only if they must be removed
    try:
        guard.verify()
        for partition in staged:
            target = directories[partition.day]
            if local:
                os.makedirs(target.path, exist_ok=True)
            for part in partition.parts:
                guard.check()
                uploaded.append((partition.day, part.name))
                # Locally a plain open: a path object per step costs more than a day's part.
                with (
                    open(part.local_path, "rb") as source,
                    (
                        open(os.path.join(target.path, part.name), "wb")
                        if local
                        else (target / part.name).open("wb")
                    ) as sink,
                ):
                    shutil.copyfileobj(source, sink, 1024 * 1024)
        previous = {partition.day: read_manifest_bytes(base, partition.day) for partition in staged}
        guard.verify()
    except BaseException as exc:  # a task timeout or a kill signal too: leave no part behind
        left = _remove_quietly([directories[day] / name for day, name in uploaded], log)
        if isinstance(exc, LuccaLockError) or not isinstance(exc, Exception):
            raise
        raise _storage_error("parts", exc, base, (), _parts_note(len(uploaded), left)) from exc

    written: list[date] = []  # days whose manifest write returned
    attempted: date | None = None  # the day being written: a lost answer may hide a success
    try:
        for partition in staged:
            guard.check()
            manifest: Manifest = {
                "manifest_version": MANIFEST_VERSION,
                "partition": {PARTITION_KEY: partition.day.isoformat()},
                "record_count": partition.records,
                "attended_count": partition.attended,
                "duplicates_dropped": partition.duplicates,
                "files": [part.describe() for part in partition.parts],
                **manifest_fields,
            }
            attempted = partition.day
            write_whole(directories[partition.day] / MANIFEST_NAME, _dump(manifest))
            written.append(partition.day)
            attempted = None
    except BaseException as exc:
        if isinstance(exc, LuccaLockError) and not guard.still_ours():
            # Another run took the lock over: restoring could overwrite its manifests.
            raise _storage_error(
                "manifests",
                exc,
                base,
                written,
                "another run may have committed the other days since",
                others="",
            ) from exc
        unrestored = _restore(base, previous, written, log)
        uncertain = attempted is not None and bool(_restore(base, previous, [attempted], log))
        note = (
            "every day it had replaced was put back on its previous manifest"
            if not unrestored and not uncertain
            else f"restoring the previous manifests failed for {len(unrestored)} days"
            + (f" (and {attempted} may be on either manifest)" if uncertain else "")
        )
        left = len(uploaded)
        if not unrestored and not uncertain:
            left = _remove_quietly([directories[day] / name for day, name in uploaded], log)
        note += "; " + _parts_note(len(uploaded), left)
        if not isinstance(exc, Exception):
            raise
        raise _storage_error("manifests", exc, base, unrestored, note) from exc

    try:
        for partition in staged:
            guard.check()  # a run paused past its lease must not delete the next holder's parts
            keep = {MANIFEST_NAME, *(part.name for part in partition.parts)}
            remove_unlisted(directories[partition.day], keep)
    except Exception as exc:
        raise _storage_error(
            "cleanup",
            exc,
            base,
            [partition.day for partition in staged],
            "the whole window is committed, but files its manifests do not list remain under "
            "the prefix until the next run of these days or a sweep removes them",
        ) from exc


class LockGuard(Protocol):
    def verify(self) -> None: ...

    def check(self) -> None: ...

    def still_ours(self) -> bool: ...


class NoGuard:
    """The guard of a commit that holds no lock: sinks whose store settles concurrency itself."""

    def __enter__(self) -> NoGuard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def check(self) -> None:
        return None

    def verify(self) -> None:
        return None

    def still_ours(self) -> bool:
        return True


def read_manifest_bytes(base: StoragePath, day: date) -> bytes | None:
    try:
        return read_fresh(partition_dir(base, day) / MANIFEST_NAME)
    except FileNotFoundError:
        return None


def _restore(
    base: StoragePath,
    previous: dict[date, bytes | None],
    written: list[date],
    log: Logger | None,
) -> list[date]:
    """Put back each day's previous manifest (or remove a new one); return the days that failed."""
    failed: list[date] = []
    for day in written:
        path = partition_dir(base, day) / MANIFEST_NAME
        try:
            data = previous[day]
            if data is None:
                path.unlink(missing_ok=True)
            else:
                write_whole(path, data)
        except Exception as exc:
            if log is not None:
                log.warning("Could not restore the previous manifest of %s: %s", day, exc)
            failed.append(day)
    return failed


def _remove_quietly(paths: list[StoragePath], log: Logger | None) -> int:
    """Best effort: delete this run's own part files; return how many could not be deleted."""
    left = 0
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except Exception as exc:
            left += 1
            if log is not None:
                log.warning("Could not remove %s after the failed commit: %s", path, exc)
    return left


def _parts_note(uploaded: int, left: int) -> str:
    if not uploaded:
        return "it had uploaded no part file"
    if not left:
        return f"its {uploaded} uploaded part files were removed"
    return (
        f"{left} of its {uploaded} uploaded part files could not be removed (unlisted: readers "
        "that follow manifests skip them; the next run of these days or a sweep removes them)"
    )


def _storage_error(
    phase: str,
    exc: BaseException,
    base: StoragePath,
    committed: Sequence[date],
    note: str,
    *,
    others: str = ", the others on their previous ones",
) -> LuccaStorageError:
    days = (
        f"{len(committed)} days are on this run's manifests ({_days_text(committed)}){others}"
        if committed
        else "no day changed: every manifest is the previous one"
    )
    return LuccaStorageError(
        f"Writing the dataset {base} failed while writing {phase}: {type(exc).__name__}: "
        f"{str(exc).rstrip('.')}. "
        f"{days}{'; ' + note if note else ''}. Re-run the same window to commit it whole.",
        phase=phase,
        committed_days=committed,
    )


def _days_text(days: Sequence[date]) -> str:
    if len(days) <= 4:
        return ", ".join(day.isoformat() for day in days)
    return f"{days[0]} .. {days[-1]}"


def remove_unlisted(directory: StoragePath, keep: set[str]) -> None:
    if is_local(directory):
        try:
            names = os.listdir(directory.path)
        except FileNotFoundError:
            return
        for name in names:
            if name not in keep:
                # A directory inside a day is no part of ours (a notebook's checkpoints): kept.
                with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                    os.unlink(os.path.join(directory.path, name))
        return
    try:
        entries = list_fresh(directory)
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name not in keep and not entry.is_dir():
            entry.unlink(missing_ok=True)


def read_manifest(base: StoragePath, day: date) -> Manifest | None:
    """The committed manifest of a day, or None if the day was never extracted."""
    data = read_manifest_bytes(base, day)
    return None if data is None else json.loads(data)


def _dump(manifest: Manifest) -> bytes:
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
