"""A Delta Lake table (delta-rs): the run's window replaced in one commit, partitioned by day."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.errors import LuccaConfigError
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

    #: Files no commit lists are kept while younger than this, whatever the retention: a run
    #: writing now has uploaded data files that its coming commit will list (the Iceberg sink
    #: keeps the same margin).
    orphan_min_age = timedelta(hours=1)

    def maintain(self, *, retention: timedelta, log: Logger) -> dict[str, int]:
        """Compact, vacuum, checkpoint and trim the log: what the weekly maintenance runs.

        - Every day held in more than one data file is rewritten into one (``optimize.compact``:
          same rows, one OPTIMIZE commit marked ``lucca.maintenance``). A run committing
          meanwhile makes it fail on conflict, and it starts again on the new version, so it
          never brings back rows a run replaced.
        - ``vacuum`` deletes the data files the table stopped using more than ``retention`` ago
          (time travel reaches back ``retention``), and files no commit lists (a killed run's,
          a lost race's) once older than ``retention`` and :attr:`orphan_min_age`. Every file a
          version of the last ``retention`` uses is kept, even when a checkpoint has forgotten
          its removal. It never touches the log: nothing whose path starts with ``_`` or ``.``
          at the table's root (``_delta_log``); every other file under the root that the table
          does not list is deleted.
        - a checkpoint of the latest version (readers load it instead of replaying every
          commit), then log entries older than the table's ``delta.logRetentionDuration``
          (30 days by default) are deleted, unless ``retention`` is longer.

        A table that does not exist yet (no run committed) is not an error: nothing is done.

        :return: ``compacted_days``, ``compacted_files`` (files rewritten), ``compacted_bytes``,
            ``compaction_files_added``, ``removed_files`` and ``removed_bytes`` (deleted by
            vacuum), ``live_files`` and ``table_version`` after maintenance.
        """
        if retention < timedelta(0):
            raise LuccaConfigError(f"Invalid retention={retention!r}: expected a duration >= 0.")
        result = dict.fromkeys(
            (
                "compacted_days",
                "compacted_files",
                "compacted_bytes",
                "compaction_files_added",
                "removed_files",
                "removed_bytes",
                "live_files",
                "table_version",
            ),
            0,
        )
        if self.open() is None:
            log.info("%s does not exist yet: nothing to maintain.", self.describe())
            return result
        result |= self._compact(log)
        result["removed_files"], result["removed_bytes"] = self._vacuum(retention, log)
        table = self._trim_log(retention, log)
        result["live_files"] = len(table.file_uris())
        result["table_version"] = int(table.version())
        return result

    def _maintenance_commit(self, step: str) -> Any:
        return self.deltalake.CommitProperties(
            custom_metadata={"lucca.maintenance": step, "lucca.provider_version": __version__}
        )

    def _compact(self, log: Logger) -> dict[str, int]:
        def attempt(number: int) -> dict[str, Any]:
            table = self.open()
            assert table is not None  # maintain() checked, and tables are not dropped here
            metrics: dict[str, Any] = table.optimize.compact(
                commit_properties=self._maintenance_commit("compaction")
            )
            return metrics

        metrics = commit_with_retries(
            attempt,
            is_conflict=self._is_conflict,
            retries=self.commit_retries,
            target=self.describe(),
            days=(),
            log=log,
        )
        removed = json.loads(metrics["filesRemoved"])
        counts = {
            "compacted_days": int(metrics["partitionsOptimized"]),
            "compacted_files": int(metrics["numFilesRemoved"]),
            "compacted_bytes": int(removed["totalSize"]),
            "compaction_files_added": int(metrics["numFilesAdded"]),
        }
        if counts["compacted_files"]:
            log.info(
                "Compacted %d data files of %d days of %s into %d",
                counts["compacted_files"],
                counts["compacted_days"],
                self.describe(),
                counts["compaction_files_added"],
            )
        return counts

    def _vacuum(self, retention: timedelta, log: Logger) -> tuple[int, int]:
        """Delete unused files in two passes: the files the log removed, by ``retention`` (the
        "lite" vacuum reads nothing else; only when ``retention`` is under the orphans' margin),
        then every file the table does not list, by age (the "full" vacuum).

        Each pass is planned first, and the files of its plan still stored are counted: delta-rs
        plans a file again while the log still holds its removal, after it was deleted.
        """
        table = self.open()
        assert table is not None
        # A checkpoint forgets removals older than delta.deletedFileRetentionDuration (7 days by
        # default); their files look unlisted then, so the versions still in reach are named.
        keep = self._versions_since(table, datetime.now(timezone.utc) - retention)
        passes: list[dict[str, Any]] = [
            {
                "retention_hours": self._whole_hours(max(retention, self.orphan_min_age)),
                "full": True,
                "keep_versions": keep,
            }
        ]
        if retention < self.orphan_min_age:
            passes.insert(0, {"retention_hours": self._whole_hours(retention)})
        files = size = 0
        for options in passes:
            planned = table.vacuum(dry_run=True, enforce_retention_duration=False, **options)
            stored = self._stored_sizes(planned)
            if not stored:
                continue  # nothing to delete: no VACUUM commits in the history
            table.vacuum(
                dry_run=False,
                enforce_retention_duration=False,
                commit_properties=self._maintenance_commit("vacuum"),
                **options,
            )
            files, size = files + len(stored), size + sum(stored.values())
        log.info(
            "Vacuumed %s: %d files deleted (%d bytes), versions %d to %d kept for time travel",
            self.describe(),
            files,
            size,
            keep[0],
            keep[-1],
        )
        return files, size

    def _stored_sizes(self, paths: Sequence[str]) -> dict[str, int]:
        """The size of each of ``paths`` (relative to the table's root) still in storage."""
        if not paths:
            return {}
        from deltalake.fs import DeltaStorageHandler
        from pyarrow.fs import FileType

        handler = DeltaStorageHandler(self.uri, self.storage_options)
        return {
            info.path: int(info.size)
            for info in handler.get_file_info(list(paths))
            if info.type == FileType.File
        }

    def _versions_since(self, table: Any, horizon: datetime) -> list[int]:
        """The version a reader at ``horizon`` gets, and every later one."""
        past = self.deltalake.DeltaTable(self.uri, storage_options=self.storage_options)
        past.load_as_version(horizon)
        return list(range(int(past.version()), int(table.version()) + 1))

    def _trim_log(self, retention: timedelta, log: Logger) -> Any:
        table = self.open()
        assert table is not None
        table.create_checkpoint()
        setting = table.metadata().configuration.get(
            "delta.logRetentionDuration", "interval 30 days"
        )
        kept = self._interval(setting)
        if kept is None or retention > kept:
            log.warning(
                "Kept the whole log of %s: its delta.logRetentionDuration (%r) is shorter than the "
                "retention asked for (%s), and time travel needs the log; set it to at least the "
                "retention (delta-rs still trims the log at its own checkpoints).",
                self.describe(),
                setting,
                retention,
            )
        else:
            table.cleanup_metadata()
        return table

    @staticmethod
    def _whole_hours(duration: timedelta) -> int:
        """Hours as vacuum takes them, rounded up: never less time travel than asked for."""
        return math.ceil(duration.total_seconds() / 3600)

    @staticmethod
    def _interval(setting: str) -> timedelta | None:
        """A Delta table property's duration (``interval 30 days``), None when not understood."""
        match = re.fullmatch(r"\s*interval\s+(\d+)\s+([a-z]+?)s?\s*", setting.lower())
        units = {
            "nanosecond": 1e-9,
            "microsecond": 1e-6,
            "millisecond": 1e-3,
            "second": 1,
            "minute": 60,
            "hour": 3600,
            "day": 86400,
            "week": 7 * 86400,
        }
        if match is None or match.group(2) not in units:
            return None
        return timedelta(seconds=int(match.group(1)) * units[match.group(2)])
