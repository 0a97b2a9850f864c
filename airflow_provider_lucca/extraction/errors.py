"""Typed errors of the extraction: what changed at the source, what failed at the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from airflow_provider_lucca.client.errors import LuccaError, LuccaResponseError


class LuccaDataChangedError(LuccaResponseError):
    """Lucca's data changed while the window was paged, in every read allowed: nothing committed."""


class LuccaLockError(LuccaError):
    """The dataset lock could not be taken in time, or was lost before the commit."""


class LuccaStorageError(LuccaError):
    """Writing the local spool or the dataset failed.

    ``phase`` is where: ``spool`` (local scratch disk), ``parts``, ``manifests`` or ``cleanup``
    (files), ``commit`` (a Delta or Iceberg table: nothing of the run is visible then).
    ``committed_days`` are the days whose manifest is this run's when the error is raised (the
    others keep their previous manifest).
    """

    def __init__(self, message: str, *, phase: str, committed_days: Sequence[date] = ()) -> None:
        super().__init__(message)
        self.phase = phase
        self.committed_days = tuple(committed_days)
