"""What extraction needs of a store path, and the few operations it adds to ObjectStoragePath."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import IO, Protocol

LOCAL_PROTOCOLS = ("", "file", "local")


class FileSystem(Protocol):
    """The fsspec calls used beside the path's own: a read and a cache reset."""

    def cat_file(self, path: str) -> bytes: ...

    def invalidate_cache(self, path: str | None = None) -> None: ...


class StoragePath(Protocol):
    """The part of ``airflow.sdk.ObjectStoragePath`` that extraction uses.

    Extraction, the lock, the sweep and the reader take any path with this interface: an
    ``ObjectStoragePath`` on S3, GCS, Azure or local files, or a stand-in in tests.
    """

    @property
    def protocol(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def parent(self) -> StoragePath: ...

    @property
    def fs(self) -> FileSystem: ...

    def __truediv__(self, key: str) -> StoragePath: ...

    def open(self, mode: str) -> IO[bytes]: ...

    def read_bytes(self) -> bytes: ...

    def write_bytes(self, data: bytes) -> int: ...

    def unlink(self, missing_ok: bool = False) -> None: ...

    def iterdir(self) -> Iterator[StoragePath]: ...

    def is_dir(self) -> bool: ...

    def mkdir(self, *, parents: bool = False, exist_ok: bool = False) -> None: ...

    def stat(self) -> Mapping[str, object]: ...


def is_local(path: StoragePath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def write_whole(path: StoragePath, data: bytes) -> None:
    """Make ``data`` visible at ``path`` all at once, never as a truncated object.

    An object store's PUT is already all-or-nothing; a local file is written aside, then renamed
    (with os calls: a path object per step costs more than the write of a small manifest).
    """
    if not is_local(path):
        path.write_bytes(data)
        return
    target = path.path
    directory, name = os.path.split(target)
    os.makedirs(directory, exist_ok=True)
    temporary = os.path.join(directory, f".{name}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, target)


def modified_at(path: StoragePath) -> float:
    """When the store last wrote ``path`` (epoch seconds); now if the store does not say."""
    try:
        info = path.stat()
        value = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    except (FileNotFoundError, AttributeError):
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else time.time()


def read_fresh(path: StoragePath) -> bytes:
    """The object's current bytes, never through a cached listing.

    s3fs remembers the listings and ETags it has seen; reading an object that another process
    replaced since then fails (``FileExpired``) or reads stale metadata. Manifests and the lock
    are replaced by other runs, so they are always read afresh.
    """
    if is_local(path):  # no cache to forget, and a plain read is 10x cheaper than fsspec's
        with open(path.path, "rb") as handle:
            return handle.read()
    _forget(path)
    data: bytes = path.fs.cat_file(path.path)
    return data


def list_fresh(directory: StoragePath) -> list[StoragePath]:
    """The directory's current entries (not a listing cached before another run wrote)."""
    _forget(directory)
    return list(directory.iterdir())


def _forget(path: StoragePath) -> None:
    with contextlib.suppress(Exception):  # a filesystem without a cache has nothing to forget
        path.fs.invalidate_cache(path.path)
