"""A Delta Lake table (delta-rs): the run's window replaced in one commit, partitioned by day."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.extraction.commit import RunFields
from airflow_provider_lucca.extraction.schema import (
    PARTITION_COLUMN,
    RecordSchema,
    import_pyarrow,
)
from airflow_provider_lucca.extraction.sinks.base import Committed, DayRecords, NoGuard, RunGuard
from airflow_provider_lucca.extraction.sinks.table import (
    DEFAULT_COMMIT_RETRIES,
    WindowRows,
    commit_metadata,
    commit_with_retries,
    window_bounds,
)

TABLE_DESCRIPTION = "Lucca realized trainings, written by airflow-provider-lucca"


def import_deltalake() -> Any:
    import_pyarrow("delta", "delta")
    try:
        import deltalake
    except ImportError as exc:
        from airflow_provider_lucca.client.errors import LuccaConfigError

        raise LuccaConfigError(
            "file_format='delta' needs deltalake: pip install 'airflow-provider-lucca[delta]'"
        ) from exc
    return deltalake


class DeltaSink:
    """Overwrite with a predicate on the window: one Delta commit replaces every day of it.

    A reader of the table (Spark, Trino, DuckDB's ``delta_scan``, polars...) sees the version
    before the run or the version after it; days of the window without records lose their rows.
    Two runs committing overlapping windows race on the log's next version: the loser's commit
    fails with a conflict and is made again on the new version (:func:`commit_with_retries`).
    Files of a run killed before its commit are not in the log: no reader sees them, and
    ``vacuum`` removes them.

    :param uri: the table root as delta-rs reads it: ``s3://bucket/key``, ``gs://...``,
        ``az://...`` or a local path.
    :param storage_options: delta-rs / object_store options (credentials, region, endpoint).
    """

    file_format = "delta"

    def __init__(
        self,
        uri: str,
        storage_options: dict[str, str] | None = None,
        *,
        commit_retries: int = DEFAULT_COMMIT_RETRIES,
    ) -> None:
        self.deltalake = import_deltalake()
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self.commit_retries = commit_retries
        self.schema = RecordSchema(import_pyarrow("delta", "delta"), partition_column=True)

    def describe(self) -> str:
        return f"Delta table {self.uri}"

    def guard(self, token: str, run_id: str | None, log: Logger) -> NoGuard:
        return NoGuard()

    def open(self) -> Any:
        """The table at its latest version, or None when no table exists there yet."""
        try:
            return self.deltalake.DeltaTable(self.uri, storage_options=self.storage_options)
        except self.deltalake.exceptions.TableNotFoundError:
            return None

    def commit(
        self,
        days: Sequence[date],
        records: DayRecords,
        fields: RunFields,
        *,
        workdir: str,
        guard: RunGuard,
        log: Logger,
    ) -> Committed:
        rows = WindowRows(self.schema, days, records)
        first, last = window_bounds(days)
        predicate = (
            f"{PARTITION_COLUMN} >= '{first.isoformat()}' "
            f"AND {PARTITION_COLUMN} <= '{last.isoformat()}'"
        )
        metadata = commit_metadata(fields, rows.total())
        properties = self.deltalake.CommitProperties(custom_metadata=metadata)
        # A commit creating the table must not be rebased by delta-rs onto a table that another
        # run created meanwhile: that rebase checks no conflict and removes no file, so the
        # days both windows hold would have both runs' rows. Failing instead, it is made again
        # on the table that now exists, where delta-rs checks the overlap.
        creating = self.deltalake.CommitProperties(custom_metadata=metadata, max_commit_retries=0)

        def attempt(number: int) -> int:
            table = self.open()
            self.deltalake.write_deltalake(
                self.uri if table is None else table,
                rows.reader(),
                partition_by=[PARTITION_COLUMN],
                mode="overwrite",
                # The window only, on a new table too: another run may create the table between
                # open() and this write, which then overwrites it, and without a predicate would
                # replace that run's rows on every day.
                predicate=predicate,
                storage_options=self.storage_options if table is None else None,
                description=TABLE_DESCRIPTION if table is None else None,
                commit_properties=creating if table is None else properties,
            )
            return self._version_of(table, fields["run"]["token"])

        version = commit_with_retries(
            attempt,
            is_conflict=self._is_conflict,
            retries=self.commit_retries,
            target=self.describe(),
            days=days,
            log=log,
        )
        log.info("Committed version %d of %s: %s to %s", version, self.describe(), first, last)
        return Committed(rows.counts, version)

    def _version_of(self, written: Any, token: str) -> int:
        """The version this run's commit made (another writer may have committed since).

        A table the commit was made through is at that version. Otherwise the table is read
        again: version 0 alone is this run's creation; after a race for the creation, the history
        says which commit is ours. ``history`` is the last resort because delta-rs holds the GIL
        through its requests (an S3 server in the same process, as in tests, never answers).
        """
        if written is not None:
            return int(written.version())
        table = self.open()
        assert table is not None, "a commit just succeeded"
        if table.version() == 0:
            return 0
        for entry in table.history(self.commit_retries + 100):
            if entry.get("lucca.run_token") == token:
                return int(entry["version"])
        return int(table.version())

    def _is_conflict(self, error: BaseException) -> bool:
        return isinstance(error, self.deltalake.exceptions.CommitFailedError)
