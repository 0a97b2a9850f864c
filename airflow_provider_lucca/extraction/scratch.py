"""The run's local scratch directory: created per run, and swept of directories of killed runs.

A worker killed mid-run (SIGKILL, OOM, a lost node) cannot delete its spool, which can hold the
whole window; on a long-lived worker these pile up until the disk is full. Each directory records
its owner (host and pid), so the next run on the same host removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.errors import LuccaStorageError

PREFIX = "lucca-extract-"
OWNER_FILE = "owner.json"
#: A directory without owner file (an older version, or killed at birth) is removed at this age.
ORPHAN_AGE_SECONDS = 24 * 3600.0
_FULL_DISK = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def scratch_directory(log: Logger, parent: str | None = None) -> Iterator[str]:
    """A new directory under ``parent`` (the temp folder), removed on exit; a full disk inside
    becomes a :class:`LuccaStorageError` that names the directory and how to move it."""
    parent = parent or tempfile.gettempdir()
    remove_stale(parent, log)
    try:
        with tempfile.TemporaryDirectory(prefix=PREFIX, dir=parent) as directory:
            with open(os.path.join(directory, OWNER_FILE), "w") as handle:
                json.dump({"host": socket.gethostname(), "pid": os.getpid()}, handle)
            yield directory
    except OSError as exc:
        if exc.errno not in _FULL_DISK:
            raise
        raise LuccaStorageError(
            f"The local spool in {parent} is full ({exc.strerror}) while staging the extracted "
            f"records: nothing was committed. Free space there, or point the worker's TMPDIR "
            f"(now {os.environ.get('TMPDIR', 'unset')}) at a larger disk; a run needs about "
            "twice the size of its window's data.",
            phase="spool",
        ) from exc


def remove_stale(parent: str, log: Logger) -> list[str]:
    """Delete the scratch directories of runs that died on this host; return their paths."""
    removed: list[str] = []
    try:
        names = [name for name in os.listdir(parent) if name.startswith(PREFIX)]
    except OSError:
        return removed
    host = socket.gethostname()
    for name in names:
        path = os.path.join(parent, name)
        if _is_stale(path, host):
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                removed.append(path)
    if removed:
        log.info("Removed %d scratch directories of killed runs: %s", len(removed), removed)
    return removed


def _is_stale(path: str, host: str) -> bool:
    try:
        with open(os.path.join(path, OWNER_FILE)) as handle:
            owner = json.load(handle)
    except (OSError, ValueError):
        try:
            return time.time() - os.path.getmtime(path) > ORPHAN_AGE_SECONDS
        except OSError:
            return False
    if not isinstance(owner, dict) or owner.get("host") != host:
        return False  # another machine's (a shared temp folder): not ours to judge
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False
