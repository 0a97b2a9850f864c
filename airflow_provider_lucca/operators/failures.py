"""Which failures of a Lucca task another attempt could fix: the others fail the task at once.

A task retry costs minutes and the tenant's request budget; spent on a refused key or a parameter
that renders wrong again, it buys nothing. Every error class of the provider is classified here,
on purpose, and a test fails when a new one is not.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_lucca.client.errors import (
    LuccaAPIError,
    LuccaAuthError,
    LuccaBudgetError,
    LuccaConfigError,
    LuccaError,
    LuccaNotFoundError,
    LuccaNotJSONPageError,
    LuccaRateLimitError,
    LuccaRedirectError,
    LuccaRequestError,
    LuccaResponseError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
    LuccaTLSError,
    LuccaTooSlowError,
)
from airflow_provider_lucca.extraction.errors import (
    LuccaCountMismatchError,
    LuccaDataChangedError,
    LuccaLockError,
    LuccaStorageError,
)
from airflow_provider_lucca.extraction.reader import PartitionIntegrityError
from airflow_provider_lucca.tenants import TenantListError

#: Every error class of the provider, told whether another attempt of the task could succeed.
#: The most specific class listed decides (``LuccaDataChangedError`` is a ``LuccaResponseError``);
#: a new subclass must be added here: ``tests/test_permanent_failures.py`` walks them all.
#: Permanent ones fail the task at once (``AirflowFailException``): a task retry would spend the
#: tenant's request budget, and minutes, only to get the same answer.
ERROR_RETRYABLE: dict[type[LuccaError], bool] = {
    # A parameter or setting that is wrong once rendered (a template giving a bad date, an
    # output_path holding another layout, a tenant list entry): the same DAG renders it again.
    LuccaConfigError: False,
    TenantListError: False,
    # What Lucca refused: a wrong or revoked key (401), a key without rights (403), a path or
    # account that does not exist (404), a request it calls wrong (other 4xx), a redirect (never
    # followed, so the key stays on its host), a certificate it cannot prove: none improves by
    # waiting five minutes.
    LuccaAuthError: False,
    LuccaNotFoundError: False,
    LuccaRequestError: False,
    LuccaRedirectError: False,
    LuccaTLSError: False,
    # A 2xx whose body breaks the answer contract (not JSON, wrong shape, a cursor that repeats,
    # a record without a usable date): the same request gets the same body.
    LuccaResponseError: False,
    # ...except an HTML page instead of JSON: a proxy's or a maintenance page in front of Lucca,
    # which goes away.
    LuccaNotJSONPageError: True,
    # Lucca overloaded or limiting: 429 / 5xx / timeouts / connections dropped until the client's
    # own retries ran out, a Retry-After above the cap, a window timing out even when split.
    # Minutes later (the task's retry_delay) they usually pass.
    LuccaAPIError: True,
    LuccaRetriesExhaustedError: True,
    LuccaRateLimitError: True,
    LuccaServerError: True,
    LuccaTooSlowError: True,
    # Lucca's data kept changing while it was paged (an import running), or the records received
    # still differ from its count after the rereads: it settles.
    LuccaDataChangedError: True,
    LuccaCountMismatchError: True,
    # Our side, not Lucca's: the shared budget's Redis unreachable, the dataset lock held by
    # another run past the timeout, the spool or the store failing to write, a committed file
    # replaced under a read by a concurrent run. Another attempt starts over cleanly.
    LuccaBudgetError: True,
    LuccaLockError: True,
    LuccaStorageError: True,
    PartitionIntegrityError: True,
    # The base class raised as such: unknown, so Airflow's usual retries apply.
    LuccaError: True,
}


def is_retryable(error: LuccaError) -> bool:
    """Whether another attempt of the task could succeed, by the most specific class of
    ``error`` in :data:`ERROR_RETRYABLE`."""
    for cls in type(error).__mro__:
        if cls in ERROR_RETRYABLE:
            return ERROR_RETRYABLE[cls]
    return True  # not a LuccaError subclass: unreachable with the annotation


class LuccaFailure(AirflowFailException):
    """An error that fails the task at once. Each one raised is also of its Lucca error's class
    (``except LuccaAuthError`` still catches it, with its ``status`` and ``path``), and has that
    error chained as its cause."""


_FAILURE_CLASSES: dict[type[LuccaError], type[LuccaFailure]] = {}


def fail_at_once(error: LuccaError) -> LuccaFailure:
    """``error`` as an ``AirflowFailException`` of its own class (e.g. ``LuccaAuthErrorNotRetried``,
    both a ``LuccaFailure`` and a ``LuccaAuthError``), its message prefixed with its type."""
    kind = type(error)
    failure = Exception.__new__(_failure_class(kind))
    Exception.__init__(failure, f"{kind.__name__}: {error} (not retried)")
    failure.__dict__.update(error.__dict__)
    return failure


def _failure_class(kind: type[LuccaError]) -> type[LuccaFailure]:
    """The ``LuccaFailure`` class of ``kind``, a module attribute (so it pickles by name)."""
    cls = _FAILURE_CLASSES.get(kind)
    if cls is None:
        name = f"{kind.__name__}NotRetried"
        cls = type(name, (LuccaFailure, kind), {"__module__": __name__, "__qualname__": name})
        _FAILURE_CLASSES[kind] = cls
        globals()[name] = cls
    return cls


for _kind, _retryable in ERROR_RETRYABLE.items():
    if not _retryable:
        _failure_class(_kind)


@contextmanager
def failing_at_once_when_permanent() -> Iterator[None]:
    """Turn an error that another attempt would get again into an ``AirflowFailException`` (no
    task retry): see :func:`fail_at_once`. Retryable ones go to Airflow's retries unchanged."""
    try:
        yield
    except LuccaError as exc:
        if is_retryable(exc) or isinstance(exc, LuccaFailure):
            raise
        raise fail_at_once(exc) from exc
