"""The few store operations the commit protocol needs beyond ``ObjectStoragePath``'s own."""

from __future__ import annotations

import contextlib
import os
import time
from datetime import datetime
from typing import Any

LOCAL_PROTOCOLS = ("", "file", "local")


def is_local(path: Any) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def write_whole(path: Any, data: bytes) -> None:
    """Make ``data`` visible at ``path`` all at once, never as a truncated object.

    An object store's PUT is already all-or-nothing; a local file is written aside, then renamed.
    """
    if not is_local(path):
        path.write_bytes(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_bytes(data)
    os.replace(temporary.path, path.path)


def modified_at(path: Any) -> float:
    """When the store last wrote ``path`` (epoch seconds); now if the store does not say."""
    try:
        info = path.stat()
        value = info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    except (FileNotFoundError, AttributeError):
        return time.time()
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value) if isinstance(value, (int, float)) else time.time()


def read_fresh(path: Any) -> bytes:
    """The object's current bytes, never through a cached listing.

    s3fs remembers the listings and ETags it has seen; reading an object that another process
    replaced since then fails (``FileExpired``) or reads stale metadata. Manifests and the lock
    are replaced by other runs, so they are always read afresh.
    """
    _forget(path)
    data: bytes = path.fs.cat_file(path.path)
    return data


def list_fresh(directory: Any) -> list[Any]:
    """The directory's current entries (not a listing cached before another run wrote)."""
    _forget(directory)
    return list(directory.iterdir())


def _forget(path: Any) -> None:
    with contextlib.suppress(Exception):  # a filesystem without a cache has nothing to forget
        path.fs.invalidate_cache(path.path)
