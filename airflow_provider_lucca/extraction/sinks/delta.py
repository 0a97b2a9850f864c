"""A Delta Lake table (delta-rs): the run's window replaced in one commit, partitioned by day
(by tenant then day when one table holds several Lucca accounts)."""

from __future__ import annotations

import json
import math
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta, timezone
from typing import Any

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.commit import ManifestFilters, RunFields
from airflow_provider_lucca.extraction.errors import LuccaStorageError, is_outage
from airflow_provider_lucca.extraction.schema import (
    PARTITION_COLUMN,
    TENANT_COLUMN,
    RecordSchema,
    import_pyarrow,
)
from airflow_provider_lucca.extraction.sinks.base import (
    Committed,
    DayCount,
    DayRecords,
    NoGuard,
    RunGuard,
)
from airflow_provider_lucca.extraction.sinks.table import (
    COUNT_COLUMNS,
    CommitRetries,
    WindowRows,
    check_run_filters,
    commit_metadata,
    commit_with_retries,
    day_counts,
    window_bounds,
)
from airflow_provider_lucca.extraction.storage import StoragePath
from airflow_provider_lucca.tenants import validate_tenant_name

TABLE_DESCRIPTION = "Lucca realized trainings, written by airflow-provider-lucca"
#: Commits of the log looked through for the newest run's filters (maintenance commits between).
HISTORY_CHECKED = 200
#: Columns whose minimum and maximum go into each file's statistics (what engines skip files on).
STATS_COLUMNS = ("id", "ownerId", "sessionId", "sessionStartsOn", "sessionEndsOn")


class _CreatedMeanwhile(Exception):
    """The run found no table, and another run created it before this run's commit."""


class _FileStats:
    """A data file's Delta statistics: record count, and per column its bounds and nulls."""

    def __init__(self) -> None:
        self.records = 0
        self.low: dict[str, Any] = {}
        self.high: dict[str, Any] = {}
        self.nulls: dict[str, int] = {}

    def add(self, table: Any) -> None:
        import pyarrow.compute as pc

        self.records += table.num_rows
        for name in STATS_COLUMNS:
            column = table.column(name)
            self.nulls[name] = self.nulls.get(name, 0) + column.null_count
            bounds = pc.min_max(column).as_py()
            for seen, value, pick in (
                (self.low, bounds["min"], min),
                (self.high, bounds["max"], max),
            ):
                if value is not None:
                    seen[name] = value if name not in seen else pick(seen[name], value)

    def to_json(self) -> str:
        def text(values: dict[str, Any]) -> dict[str, Any]:
            return {k: v.isoformat() if isinstance(v, date) else v for k, v in values.items()}

        return json.dumps(
            {
                "numRecords": self.records,
                "minValues": text(self.low),
                "maxValues": text(self.high),
                "nullCount": self.nulls,
            }
        )


def _remove_quietly(filesystem: Any, paths: Sequence[str], log: Logger) -> None:
    """Delete data files no commit lists (what is left, maintenance removes as orphans)."""
    failed = 0
    for path in paths:
        try:
            filesystem.delete_file(path)
        except FileNotFoundError:
            pass
        except Exception:
            failed += 1
    if failed:
        log.warning("%d unlisted data files could not be removed; maintenance will.", failed)


def import_deltalake() -> Any:
    import_pyarrow("delta", "delta")
    try:
        import deltalake
    except ImportError as exc:
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
    :param files: the same root as a :class:`StoragePath` (an ``ObjectStoragePath``), to upload
        the data files through fsspec; without it they go through delta-rs's store, one at a
        time.
    :param tenant: the Lucca account of the run when one table holds several: the table gets a
        ``tenant`` column and is partitioned by ``tenant`` then ``session_end_on``, and the
        run's commit replaces that tenant's days of its window only. None: a table of one
        account, partitioned by day alone. The two kinds are never mixed in one table.
    :param commit_retries: commits made again after losing a race; by default
        :data:`DEFAULT_COMMIT_RETRIES`, or :data:`TENANT_COMMIT_RETRIES` with a jittered wait
        for a tenant (tenants finishing together all commit into the one table).
    """

    file_format = "delta"

    def __init__(
        self,
        uri: str,
        storage_options: dict[str, str] | None = None,
        *,
        files: StoragePath | None = None,
        tenant: str | None = None,
        commit_retries: int | None = None,
    ) -> None:
        self.deltalake = import_deltalake()
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self.files = files
        self.tenant = None if tenant is None else validate_tenant_name(tenant)
        self.retry = CommitRetries.for_sink(tenant, commit_retries)
        self.schema = RecordSchema(
            import_pyarrow("delta", "delta"),
            partition_column=True,
            tenant_column=tenant is not None,
        )
        #: The table's partition columns, outermost first (the data files' directories).
        self.partition_by = (
            [PARTITION_COLUMN] if tenant is None else [TENANT_COLUMN, PARTITION_COLUMN]
        )

    def describe(self) -> str:
        return f"Delta table {self.uri}"

    def guard(self, token: str, run_id: str | None, log: Logger) -> NoGuard:
        """Concurrent runs are settled by the log's commit. An existing table is checked now,
        before the run's first request to Lucca."""
        try:
            table = self.open()
            if table is None:
                # The first run: prove now that the root can be written (a misspelled bucket,
                # missing credentials), not after the whole read of Lucca.
                filesystem = self._filesystem()
                probe = f"_lucca_write_check_{token}"
                import pyarrow.parquet as pq

                with filesystem.open_output_stream(probe) as stream:
                    # Parquet, as the data files are written (delta-rs's stream takes no bytes).
                    pq.write_table(self.schema.arrow.empty_table(), stream)
                filesystem.delete_file(probe)
        except Exception as exc:
            if is_outage(exc):
                raise LuccaStorageError(
                    f"{self.describe()} could not be reached ({type(exc).__name__}: {exc}); "
                    "nothing was requested from Lucca. Another attempt may succeed.",
                    phase="open",
                ) from exc
            raise LuccaConfigError(
                f"Invalid output_path: {self.describe()} cannot be read or written "
                f"({type(exc).__name__}: {exc}). Check the bucket and the connection's "
                "credentials."
            ) from exc
        if table is not None:
            self._check_compatible(table)
        return NoGuard()

    def _check_compatible(self, table: Any) -> None:
        """The table must be this provider's: the same columns and types, partitioned by day
        alone (by tenant then day for a tenant's run). Committing into another table would
        replace its schema or, unpartitioned, its rows outside the window; a single-account
        table and a tenants' table are never mixed: a run of one kind would replace every row
        of its days written by the other kind."""
        pa = self.schema.pa
        found = pa.schema(table.schema().to_arrow())
        expected = [(field.name, field.type) for field in self.schema.arrow]
        partitions = list(table.metadata().partition_columns)
        tenanted = TENANT_COLUMN in found.names or TENANT_COLUMN in partitions
        if self.tenant is not None and not tenanted:
            raise LuccaConfigError(
                f"Invalid output_path for tenant={self.tenant!r}: {self.describe()} holds a "
                f"single-account table (no {TENANT_COLUMN} column), whose days a tenant's run "
                "would replace for every account. Give the tenants' table a path of its own, or "
                "run this account without tenant."
            )
        if self.tenant is None and tenanted:
            raise LuccaConfigError(
                f"Invalid output_path: {self.describe()} holds several Lucca accounts' rows (a "
                f"{TENANT_COLUMN} partition column), and a run without tenant would replace the "
                "days of every tenant. Set tenant, or give this account a path of its own."
            )
        if [(field.name, field.type) for field in found] != expected:
            raise LuccaConfigError(
                f"Invalid output_path: {self.describe()} exists with columns this provider does "
                f"not write ({found.names}); give the Lucca table a path of its own."
            )
        if partitions != self.partition_by:
            wanted = " then ".join(self.partition_by)
            raise LuccaConfigError(
                f"Invalid output_path: {self.describe()} is partitioned by {partitions}, not by "
                f"{wanted}{' alone' if self.tenant is None else ''}: a run replaces whole days; "
                "give the Lucca table a path of its own."
            )

    def open(self) -> Any:
        """The table at its latest version, or None when no table exists there yet."""
        try:
            return self.deltalake.DeltaTable(self.uri, storage_options=self.storage_options)
        except self.deltalake.exceptions.TableNotFoundError:
            return None

    def committed_counts(self, filters: ManifestFilters) -> dict[date, DayCount]:
        """Every day's rows and attended rows (of the sink's tenant), scanned from two columns
        of the current version; the newest run commit's filters are checked first."""
        table = self.open()
        if table is None:
            return {}
        check_run_filters(self.describe(), table.history(HISTORY_CHECKED), filters, self.tenant)
        import pyarrow.dataset as ds

        rows = table.to_pyarrow_dataset().to_table(
            columns=list(COUNT_COLUMNS),
            filter=None if self.tenant is None else ds.field(TENANT_COLUMN) == self.tenant,
        )
        return day_counts(self.schema.pa, rows)

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
        """Write the window's data files a day at a time, upload them, then commit them in one
        version.

        ``write_deltalake`` would keep a Parquet writer open for every day of the window until
        its stream ends (365 days: +130 MB, growing with the records); here one day's file is
        open at a time, on local scratch disk, and the files are uploaded together, then go into
        the log in one transaction that replaces the window's partitions. On a conflict the same
        files are committed again on the new version; if the run fails before its commit, it
        deletes them.
        """
        first, last = window_bounds(days)
        rows = WindowRows(self.schema, days, records, self.tenant)
        metadata = commit_metadata(fields, rows.total(), self.tenant)
        token = fields["run"]["token"]
        filesystem = self._filesystem()
        staging = os.path.join(workdir, "delta")
        staged = list(self._write(rows, token, staging))
        actions = [action for _, action in staged]
        written = [action.path for action in actions]
        try:
            self._upload(filesystem, staging, written)
        except BaseException:
            # No commit was tried: no version lists the files (what is left, maintenance removes).
            _remove_quietly(filesystem, written, log)
            raise
        try:
            version = commit_with_retries(
                lambda number: self._commit(actions, first, last, metadata, token, filesystem),
                is_conflict=self._is_conflict,
                retries=self.retry.retries,
                target=self.describe(),
                log=log,
                backoff=self.retry.backoff,
            )
        except LuccaStorageError as exc:
            if self._is_conflict(exc.__cause__):
                # Every commit lost its race: none lists the files.
                _remove_quietly(filesystem, written, log)
            raise
        # Anything else (an execution_timeout, a SIGTERM, a failure once the store may have
        # taken the commit) leaves the files: a version may list them. Maintenance removes
        # them if none does.
        log.info("Committed version %d of %s: %s to %s", version, self.describe(), first, last)
        return Committed(rows.counts, version)

    def _filesystem(self) -> Any:
        """The table root as a pyarrow file system, through delta-rs's own object store (the
        same storage options, hence the same credentials and endpoint as its commits)."""
        from deltalake.fs import DeltaStorageHandler
        from pyarrow.fs import PyFileSystem

        if "://" not in self.uri:
            os.makedirs(self.uri, exist_ok=True)
        return PyFileSystem(DeltaStorageHandler(self.uri, self.storage_options))

    def _write(self, rows: WindowRows, token: str, staging: str) -> Iterator[tuple[str, Any]]:
        """``(local file, AddAction)`` per day with records: its file written in ``staging`` as
        batches arrive (they come day after day), with the statistics engines skip files on."""
        import pyarrow.parquet as pq
        from deltalake.transaction import AddAction

        pa = self.schema.pa
        data_schema = self.schema.arrow
        for column in self.partition_by:
            data_schema = data_schema.remove(data_schema.get_field_index(column))
        # Hive-style directories, outermost partition first (tenant names need no escaping).
        prefix = "" if self.tenant is None else f"{TENANT_COLUMN}={self.tenant}/"
        day: date | None = None
        writer: Any = None
        stats = _FileStats()
        path = local = ""

        def close() -> tuple[str, Any]:
            writer.close()
            assert day is not None
            size = os.path.getsize(local)
            now_ms = int(time.time() * 1000)
            partition = {PARTITION_COLUMN: day.isoformat()}
            if self.tenant is not None:
                partition[TENANT_COLUMN] = self.tenant
            return local, AddAction(path, size, partition, now_ms, True, stats.to_json())

        for batch in rows.batches():
            batch_day = batch.column(PARTITION_COLUMN)[0].as_py()
            if batch_day != day:
                if writer is not None:
                    yield close()
                day, stats = batch_day, _FileStats()
                path = (
                    f"{prefix}{PARTITION_COLUMN}={batch_day.isoformat()}/"
                    f"part-00000-{token}-{uuid.uuid4().hex}.zstd.parquet"
                )
                local = os.path.join(staging, path)
                os.makedirs(os.path.dirname(local), exist_ok=True)
                writer = pq.ParquetWriter(local, data_schema, compression="zstd")
            data = pa.Table.from_batches([batch]).drop_columns(self.partition_by)
            writer.write_table(data)
            stats.add(data)
        if writer is not None:
            yield close()

    def _upload(self, filesystem: Any, staging: str, paths: Sequence[str]) -> None:
        """Upload the staged files: through ``files`` (fsspec: one PUT a file, many at once,
        without holding the GIL) when the sink has it, else through delta-rs's store."""
        if self.files is not None:
            root = self.files
            if root.protocol in ("file", "local"):
                for path in paths:
                    (root / path).parent.mkdir(parents=True, exist_ok=True)
            fsspec_filesystem: Any = root.fs  # fsspec's AbstractFileSystem
            fsspec_filesystem.put(
                [os.path.join(staging, path) for path in paths],
                [f"{root.path.rstrip('/')}/{path}" for path in paths],
            )
            return
        from pyarrow.fs import LocalFileSystem, copy_files

        for path in paths:
            copy_files(
                os.path.join(staging, path),
                path,
                source_filesystem=LocalFileSystem(),
                destination_filesystem=filesystem,
            )

    def _commit(
        self,
        actions: list[Any],
        first: date,
        last: date,
        metadata: dict[str, str],
        token: str,
        filesystem: Any,
    ) -> int:
        """One commit of ``actions`` replacing the days ``[first, last]`` (of the sink's tenant
        alone, when it has one); its version."""
        from deltalake.transaction import create_table_with_add_actions

        table = self.open()
        if table is None:
            try:
                create_table_with_add_actions(
                    self.uri,
                    self.deltalake.Schema.from_arrow(self.schema.arrow),
                    actions,
                    mode="error",
                    partition_by=self.partition_by,
                    description=TABLE_DESCRIPTION,
                    storage_options=self.storage_options,
                    commit_properties=self.deltalake.CommitProperties(
                        custom_metadata=metadata, max_commit_retries=0
                    ),
                )
            except Exception as exc:
                if self.open() is not None:
                    # Another run created the table meanwhile: commit on it instead, where the
                    # overlap of the two windows is checked.
                    raise _CreatedMeanwhile(str(exc)) from exc
                raise
            return self._version_of(token, filesystem, 0)
        self._check_compatible(table)
        base = int(table.version())
        window = [
            (PARTITION_COLUMN, ">=", first.isoformat()),
            (PARTITION_COLUMN, "<=", last.isoformat()),
        ]
        if self.tenant is not None:
            # The removes delta-rs derives: this tenant's files of the window, no other's.
            window.insert(0, (TENANT_COLUMN, "=", self.tenant))
        table.create_write_transaction(
            actions,
            mode="overwrite",
            schema=self.schema.arrow,
            partition_by=self.partition_by,
            partition_filters=window,
            # Not rebased by delta-rs: its conflict check does not see files another run added
            # to days that were empty at this run's version (it would keep both runs' rows).
            # Failing instead, the commit is made again on the new version, whose files in the
            # window it then replaces.
            commit_properties=self.deltalake.CommitProperties(
                custom_metadata=metadata, max_commit_retries=0
            ),
        )
        return self._version_of(token, filesystem, base + 1)

    def _version_of(self, token: str, filesystem: Any, start: int) -> int:
        """The version whose commit carries this run's token, from ``start`` on (another writer
        may have committed before it or since). Read from the log's files, not ``history()``:
        delta-rs holds the GIL through that call's requests."""
        version = start
        while True:
            path = f"_delta_log/{version:020d}.json"
            try:
                with filesystem.open_input_stream(path) as stream:
                    text = stream.read().decode()
            except FileNotFoundError:
                raise LuccaStorageError(
                    f"{self.describe()}: the commit succeeded but no version from {start} on "
                    f"carries its run token {token}.",
                    phase="commit",
                ) from None
            if f'"lucca.run_token":"{token}"' in text.replace(" ", ""):
                return version
            version += 1

    def _is_conflict(self, error: BaseException | None) -> bool:
        return isinstance(error, (self.deltalake.exceptions.CommitFailedError, _CreatedMeanwhile))

    #: Files no commit lists are kept while younger than this, whatever the retention: a run
    #: writing now has uploaded data files that its coming commit will list (the Iceberg sink
    #: keeps the same margin).
    orphan_min_age = timedelta(hours=1)

    def maintain(self, *, retention: timedelta, log: Logger) -> dict[str, int]:
        """Compact, vacuum, checkpoint and trim the log: what the weekly maintenance runs.

        - Every day held in more than one data file is rewritten into one (``optimize.compact``:
          same rows, one OPTIMIZE commit marked ``lucca.maintenance``); in a tenants' table each
          tenant's day is a partition of its own, so two tenants' rows never share a file. A run
          committing meanwhile (of any tenant: delta-rs fails an OPTIMIZE after any concurrent
          removal) makes it fail on conflict, and it starts again on the new version, so it
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
        table = self.open()
        if table is None:
            log.info("%s does not exist yet: nothing to maintain.", self.describe())
            return result
        tenanted = TENANT_COLUMN in table.metadata().partition_columns
        result |= self._compact(log, tenanted=tenanted)
        result["removed_files"], result["removed_bytes"] = self._vacuum(retention, log)
        table = self._trim_log(retention, log)
        result["live_files"] = len(table.file_uris())
        result["table_version"] = int(table.version())
        return result

    def _maintenance_commit(self, step: str) -> Any:
        return self.deltalake.CommitProperties(
            custom_metadata={"lucca.maintenance": step, "lucca.provider_version": __version__}
        )

    def _compact(self, log: Logger, *, tenanted: bool) -> dict[str, int]:
        plan = self.retry.for_compaction(tenanted)

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
            retries=plan.retries,
            target=self.describe(),
            log=log,
            backoff=plan.backoff,
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
