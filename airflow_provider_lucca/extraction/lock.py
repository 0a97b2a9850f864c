"""A dataset-level lock in the store itself, so that two runs never commit the same dataset at once.

Two runs on overlapping windows (a catchup, a backfill, a manual re-run beside the schedule) each
upload parts, write manifests, then delete what their manifests do not list: interleaved, one run's
cleanup deletes files the other's manifests list. The lock makes whole runs (read and commit) take
turns per dataset. Runs of one dataset share one Lucca tenant, whose rate limit they would share
anyway, so taking turns costs no throughput.

The lock is one object, ``<dataset>/_lock.json``, created only with a conditional create that fails
when it exists (``O_EXCL``-style hard link on a local disk; ``If-None-Match: *`` on S3, which s3fs
sends for mode ``"xb"``; the store's own precondition on others, through the same mode). It holds
the run token and a lease that a background thread renews every third of the lease. A lock whose
lease ran out (its run was killed) is taken over: deleted, then created again conditionally. Before
each write phase the holder reads the lock back and checks its token, and between writes it checks
that its lease is still running, so a run that lost the lock (paused past its lease) fails before
it writes rather than racing the new holder.

Clocks: the lease is judged by wall clocks, so the workers' clocks must agree to within two thirds
of the lease (200 s with the default lease of 300 s).
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.errors import LuccaLockError
from airflow_provider_lucca.extraction.storage import (
    StoragePath,
    is_local,
    modified_at,
    read_fresh,
    write_whole,
)

LOCK_NAME = "_lock.json"
DEFAULT_LOCK_TIMEOUT = 3600.0
DEFAULT_LOCK_LEASE = 300.0
MAX_LOCK_TIMEOUT = 24 * 3600.0
MIN_LOCK_LEASE, MAX_LOCK_LEASE = 5.0, 3600.0
WAIT_LOG_SECONDS = 60.0


@dataclass(frozen=True)
class LockPolicy:
    """How long a run waits for the dataset lock, and how long its hold lasts without renewal.

    :param timeout: seconds to wait for a lock held by another run before failing; 0 fails at once.
    :param lease: seconds a holder's lock stays valid after its last renewal; a run killed while
        holding the lock blocks others for at most this long.
    :param poll: seconds between two looks at a held lock.
    """

    timeout: float = DEFAULT_LOCK_TIMEOUT
    lease: float = DEFAULT_LOCK_LEASE
    poll: float = 1.0

    def __post_init__(self) -> None:
        validate_seconds("lock_timeout", self.timeout, 0.0, MAX_LOCK_TIMEOUT)
        validate_seconds("lock_lease", self.lease, MIN_LOCK_LEASE, MAX_LOCK_LEASE)
        validate_seconds("lock poll", self.poll, 0.01, 60.0)


def validate_seconds(
    name: str, value: object, minimum: float, maximum: float, unit: str = "seconds"
) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not minimum <= value <= maximum
    ):
        raise LuccaConfigError(
            f"Invalid {name}={value!r}: expected {unit} from {minimum:g} to {maximum:g}."
        )
    return float(value)


class DatasetLock:
    """The lock of one dataset root, held by one run (``token``); use as a context manager."""

    def __init__(
        self,
        base: StoragePath,
        token: str,
        *,
        run_id: str | None,
        policy: LockPolicy,
        log: Logger,
    ) -> None:
        self.path = base / LOCK_NAME
        self.token = token
        self.run_id = run_id
        self.policy = policy
        self.log = log
        self._local = is_local(base)
        self._valid_until = 0.0  # monotonic
        self._lost: str | None = None
        #: Local directories the lock created: removed on release if the run left them empty.
        self._created_dirs: list[str] = []
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # -- taking and giving back

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def acquire(self) -> None:
        deadline = time.monotonic() + self.policy.timeout
        waited_for: str | None = None
        last_said = 0.0
        while True:
            if self._try_create():
                self._start_renewing()
                if waited_for:
                    self.log.info("Took the dataset lock %s after %s", self.path, waited_for)
                return
            holder = self._read(judge=True)
            if holder is not None and holder.get("token") == self.token:
                # Our own create went through but its answer was lost (the store then said
                # "exists" to the retry): the lock is ours.
                self._valid_until = time.monotonic() + self.policy.lease / 3
                self._start_renewing()
                return
            if holder is not None and _expired(holder):
                self.log.warning(
                    "Taking over the dataset lock %s: its holder (run %s, token %s) stopped "
                    "renewing it at %s",
                    self.path,
                    holder.get("run_id"),
                    holder.get("token"),
                    holder.get("expires_at"),
                )
                self._delete_if(holder.get("token"))
                continue
            holder_text = _describe(holder)
            if holder_text != waited_for or time.monotonic() - last_said >= WAIT_LOG_SECONDS:
                self.log.info("Dataset %s is locked by %s; waiting", self.path.parent, holder_text)
                last_said = time.monotonic()
            waited_for = holder_text
            if time.monotonic() >= deadline:
                raise LuccaLockError(
                    f"The dataset {self.path.parent} is locked by {waited_for}, and "
                    f"lock_timeout={self.policy.timeout:g} s ran out: two runs must not commit "
                    "the same dataset at once. Nothing was read or written; re-run when the other "
                    "run has finished, or raise lock_timeout."
                )
            time.sleep(min(self.policy.poll, max(0.0, deadline - time.monotonic())) or 0.01)

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=30)
        try:
            self._delete_if(self.token)
        except Exception as exc:  # the run's outcome stands; the lease frees the lock later
            self.log.warning("Could not release the dataset lock %s: %s", self.path, exc)
        for directory in self._created_dirs:  # a run that wrote nothing leaves no empty folder
            try:
                os.rmdir(directory)
            except OSError:
                break

    # -- checks before writing

    def verify(self) -> None:
        """Read the lock back: it must still be this run's, with its lease running."""
        holder = self._read()
        if holder is None or holder.get("token") != self.token:
            self._lost = f"the lock now belongs to {_describe(holder)}"
        self.check()

    def still_ours(self) -> bool:
        """Whether the lock object still holds this run's token (a read; False if unreadable).

        After the lease ran out, a run whose token is still in place was not taken over: it may
        still put back what it changed."""
        try:
            holder = self._read()
        except Exception:
            return False
        return holder is not None and holder.get("token") == self.token

    def check(self) -> None:
        """Without I/O: the lease is still running and no renewal saw another token."""
        if self._lost is not None:
            raise LuccaLockError(
                f"Lost the dataset lock {self.path} ({self._lost}): another run may be "
                "committing; this run stops before writing more."
            )
        if time.monotonic() > self._valid_until:
            raise LuccaLockError(
                f"The lease of the dataset lock {self.path} ran out (lock_lease="
                f"{self.policy.lease:g} s, last renewal failed or the process was paused): this "
                "run stops before writing more."
            )

    # -- the object itself

    def _content(self) -> bytes:
        now = time.time()
        return json.dumps(
            {
                "token": self.token,
                "run_id": self.run_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "renewed_at": _iso(now),
                "expires_at": _iso(now + self.policy.lease),
                "expires_at_epoch": now + self.policy.lease,
            },
            indent=2,
        ).encode()

    def _try_create(self) -> bool:
        started = time.monotonic()
        data = self._content()
        try:
            if self._local:
                self._created_dirs = _create_local(self.path.path, data)
            else:
                with self.path.open("xb") as handle:
                    handle.write(data)
        except FileExistsError:
            return False
        except ValueError as exc:  # a filesystem without an exclusive-create mode
            raise LuccaConfigError(
                f"The store of {self.path.parent} cannot create an object only if it does not "
                f"exist ({exc}), which the dataset lock needs."
            ) from exc
        self._valid_until = started + self.policy.lease
        return True

    def _read(self, judge: bool = False) -> dict[str, Any] | None:
        """The lock's content, or None when there is none. ``judge`` adds ``_expires``, the
        effective end of its lease, at the cost of a stat: only a waiting run needs it."""
        try:
            data = read_fresh(self.path)
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(data)
        except ValueError:
            holder = None
        if not isinstance(holder, dict):
            holder = {"token": None}  # not a lock this provider wrote: held by someone unknown
        if not judge:
            return holder
        written = modified_at(self.path)
        declared = holder.get("expires_at_epoch")
        if (
            isinstance(declared, bool)
            or not isinstance(declared, (int, float))
            or not math.isfinite(declared)
        ):
            declared = written + self.policy.lease
        # A holder renews by rewriting the object, so the store's own time of the last write
        # bounds any lease: a lock declaring a lease in 2100 (a skewed clock) still expires.
        holder["_expires"] = min(declared, written + MAX_LOCK_LEASE)
        return holder

    def _delete_if(self, token: object) -> None:
        holder = self._read()
        if holder is not None and holder.get("token") == token:
            self.path.unlink(missing_ok=True)

    # -- lease renewal

    def _start_renewing(self) -> None:
        self._stop.clear()
        self._renewer = threading.Thread(
            target=self._renew_loop, name=f"lucca-lock-{self.token}", daemon=True
        )
        self._renewer.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.policy.lease / 3):
            started = time.monotonic()
            try:
                holder = self._read()
                if holder is None or holder.get("token") != self.token:
                    self._lost = f"a renewal found {_describe(holder)}"
                    return
                write_whole(self.path, self._content())
            except Exception as exc:  # retried at the next period while the lease lasts
                self.log.warning("Could not renew the dataset lock %s: %s", self.path, exc)
                continue
            self._valid_until = started + self.policy.lease


def _create_local(path: str, data: bytes) -> list[str]:
    """Complete content or nothing: write a private file, then hard-link it to the lock name.

    ``link`` fails with ``EEXIST`` like ``O_EXCL``, and a reader never sees a half-written lock.
    Returns the directories it had to create, deepest first (a run that wrote nothing removes
    them again; if one vanishes in between, this tries again).
    """
    for attempt in range(3):
        created = []
        directory = os.path.dirname(path)
        while directory and not os.path.isdir(directory):
            created.append(directory)
            directory = os.path.dirname(directory)
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            temporary = f"{path}.{uuid.uuid4().hex}.tmp"
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except FileNotFoundError:
            if attempt == 2:
                raise
            continue
        try:
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
        return created
    raise AssertionError("unreachable")  # pragma: no cover


def _expired(holder: dict[str, Any]) -> bool:
    return bool(time.time() > holder["_expires"])


def _describe(holder: dict[str, Any] | None) -> str:
    if holder is None:
        return "no run"
    return (
        f"run {holder.get('run_id')!r} (token {holder.get('token')}, host {holder.get('host')}, "
        f"lease until {_iso(holder['_expires']) if '_expires' in holder else '?'})"
    )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")
