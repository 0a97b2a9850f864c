"""Typed errors of the extraction: what changed at the source, what failed at the store."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from airflow_provider_lucca.client.errors import LuccaError, LuccaResponseError


class LuccaDataChangedError(LuccaResponseError):
    """Lucca's data changed while the window was paged, in every read allowed: nothing committed."""


class LuccaCountMismatchError(LuccaResponseError):
    """The records received differ from the count Lucca reported for the same request, after
    the rereads: usually an import still running, which a later attempt reads settled."""


class LuccaLockError(LuccaError):
    """The dataset lock could not be taken in time, or was lost before the commit."""


class LuccaStorageError(LuccaError):
    """Writing the local spool or the dataset failed.

    ``phase`` is where: ``open`` (a table's store or catalog unreachable before any request),
    ``spool`` (local scratch disk), ``parts``, ``manifests`` or ``cleanup`` (files), ``commit``
    (a Delta or Iceberg table: nothing of the run is visible then).
    ``committed_days`` are the days whose manifest is this run's when the error is raised (the
    others keep their previous manifest).
    """

    def __init__(self, message: str, *, phase: str, committed_days: Sequence[date] = ()) -> None:
        super().__init__(message)
        self.phase = phase
        self.committed_days = tuple(committed_days)


#: What a store or catalog says when it refuses a setting: waiting does not change these.
_REFUSALS = re.compile(
    r"NoSuchBucket|NoSuchKey|AccessDenied|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"ExpiredToken|InvalidBucketName|\b40[0134]\b|Forbidden|Unauthorized|does not exist|"
    r"[Nn]ot found|[Pp]ermission denied|No such file|[Nn]o module named|not installed",
)
#: What a store or catalog says when it is down or overloaded for a while.
_OUTAGES = re.compile(
    r"\b50[0234]\b|SlowDown|[Ss]ervice ?[Uu]navailable|[Tt]imed? ?out|[Cc]onnection (refused|"
    r"reset|aborted|closed)|[Bb]roken pipe|error sending request|dispatch failure|"
    r"[Tt]emporar|[Tt]ry again|[Uu]navailable|[Ii]nternal ?[Ee]rror",
)
_OUTAGE_TYPES = (ConnectionError, TimeoutError)


def is_outage(exc: BaseException) -> bool:
    """Whether opening a store or a catalog failed because it was down (a 5xx, a timeout, a
    refused connection), not because of a setting (a missing bucket, refused credentials, an
    unknown catalog type): another task attempt may then succeed. A failure showing both, or
    neither, is taken for a setting, which the task's error message names."""
    texts = []
    outage_type = False
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        texts.append(f"{type(error).__name__}: {error}")
        outage_type = outage_type or isinstance(error, _OUTAGE_TYPES)
        error = error.__cause__ or error.__context__
    text = "\n".join(texts)
    if _REFUSALS.search(text):
        return False
    return outage_type or _OUTAGES.search(text) is not None
