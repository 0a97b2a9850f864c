"""An Apache Iceberg table (pyiceberg): the run's window replaced in one snapshot, by day.

pyiceberg's own ``Transaction.overwrite`` does not fit: given a ``RecordBatchReader`` it refuses a
partitioned table (pyiceberg 0.12), given a ``pa.Table`` it holds the whole window in memory, and it
commits a DELETE snapshot then an APPEND snapshot. This sink writes the data files itself, one per
day, :data:`CHUNK_ROWS` rows at a time, then commits them with the removal of the window's previous
files as one OVERWRITE snapshot: a reader sees the snapshot before the run or this one.

It uses a few of pyiceberg's internals (the data-file writer, the overwrite snapshot producer, the
manifest merger), as pyiceberg's own write path does: those of pyiceberg 0.12, which the tests run.
"""

from __future__ import annotations

import functools
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

from airflow_provider_lucca import __version__
from airflow_provider_lucca.client.client import Logger
from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.commit import ManifestFilters, RunFields
from airflow_provider_lucca.extraction.errors import LuccaStorageError
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
from airflow_provider_lucca.tenants import validate_tenant_name

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.io import FileIO
    from pyiceberg.manifest import DataFile
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table, Transaction
    from pyiceberg.table.update.snapshot import _OverwriteFiles

TABLE_DESCRIPTION = "Lucca realized trainings, written by airflow-provider-lucca"
#: The rows a run holds in memory while it writes its data files (one file per day; a day bigger
#: than this gets several), whatever the length of its window.
CHUNK_ROWS = 25_000
#: Files younger than this are never orphans, whatever the retention: a run writes its data files
#: before its commit, and they are referenced only once it has committed.
ORPHAN_MIN_AGE = timedelta(hours=1)
#: A file under the table's location that is no table's (a Hadoop catalog's pointer).
_NEVER_ORPHANS = ("version-hint.text",)


def import_pyiceberg() -> None:
    """pyiceberg with pyarrow, or a configuration error naming the extra that installs them."""
    import_pyarrow("iceberg", "iceberg")
    try:
        import pyiceberg  # noqa: F401
    except ImportError as exc:
        raise LuccaConfigError(
            "file_format='iceberg' needs pyiceberg: pip install 'airflow-provider-lucca[iceberg]'"
        ) from exc


@dataclass(frozen=True)
class _DayFiles:
    """The live data files of one day, of one tenant in a tenants' table (a file whose rows
    span several days is in none)."""

    day: date
    files: list[DataFile]
    tenant: str | None = None


class IcebergSink:
    """Overwrite the window in one snapshot of a table partitioned by ``session_end_on``.

    The table (and its namespace) is created on the first run. A run writes its data files first,
    then commits one OVERWRITE snapshot that removes every data file of the window and adds its
    own: readers (Spark, Trino, Athena, DuckDB, polars, pyiceberg...) see the table before the run
    or after it, never a mix; days of the window without records lose their rows. Two runs
    committing at once race on the catalog's pointer: the loser's commit fails, pyiceberg retries
    it on the new snapshot when nothing of its window changed there, and otherwise this sink
    commits again on the reloaded table (:func:`commit_with_retries`), reusing the data files it
    wrote. A killed run leaves unreferenced files, which :meth:`maintain` removes.

    :param catalog: pyiceberg catalog properties (``type``, ``uri``, ``warehouse``, ``s3.*``...;
        they may hold credentials and are never logged) or a callable returning the catalog.
    :param identifier: ``namespace.table`` (namespaces may nest).
    :param catalog_name: the catalog's name (for pyiceberg, and in :meth:`describe`).
    :param tenant: the Lucca account of the run when one table holds several: the table gets a
        ``tenant`` column and is partitioned by ``identity(tenant)`` then
        ``identity(session_end_on)``, and the run's snapshot replaces that tenant's files of
        its window only. None: a table of one account, partitioned by day alone. The two kinds
        are never mixed in one table.
    :param commit_retries: commits made again on a reloaded table after losing a race; by
        default :data:`DEFAULT_COMMIT_RETRIES`, or :data:`TENANT_COMMIT_RETRIES` with a jittered
        wait for a tenant (tenants finishing together all commit into the one table).
    """

    file_format = "iceberg"

    def __init__(
        self,
        catalog: Mapping[str, str] | Callable[[], Catalog],
        identifier: str,
        *,
        catalog_name: str = "default",
        tenant: str | None = None,
        commit_retries: int | None = None,
    ) -> None:
        import_pyiceberg()
        self._catalog_source = catalog if callable(catalog) else dict(catalog)
        self._catalog: Catalog | None = None
        self.identifier = identifier
        self.catalog_name = catalog_name
        self.tenant = None if tenant is None else validate_tenant_name(tenant)
        self.retry = CommitRetries.for_sink(tenant, commit_retries)
        self.schema = RecordSchema(
            import_pyarrow("iceberg", "iceberg"),
            partition_column=True,
            tenant_column=tenant is not None,
        )

    def __repr__(self) -> str:
        return f"IcebergSink({self.describe()!r})"

    def describe(self) -> str:
        return f"Iceberg table {self.identifier} (catalog {self.catalog_name})"

    def guard(self, token: str, run_id: str | None, log: Logger) -> NoGuard:
        """Concurrent runs are settled by the catalog's commit. The catalog is reached, and an
        existing table's schema checked, now: before the run's first request to Lucca."""
        table = self.load_table()
        if table is not None:
            self._check_compatible(table)
        return NoGuard()

    # ------------------------------------------------------------------ catalog and table

    def catalog(self) -> Catalog:
        """The catalog, loaded once (the SQL catalog creates its own tables on first use)."""
        if self._catalog is None:
            source = self._catalog_source
            if callable(source):
                self._catalog = source()
            else:
                from pyiceberg.catalog import load_catalog

                try:
                    self._catalog = load_catalog(self.catalog_name, **source)
                except Exception:
                    # Two first runs at once race on the SQL catalog's own tables (one of them
                    # finds them being created): once more finds them there.
                    self._catalog = load_catalog(self.catalog_name, **source)
        return self._catalog

    def load_table(self) -> Table | None:
        """The table at its current snapshot, or None when it does not exist yet."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            return self.catalog().load_table(self.identifier)
        except (NoSuchTableError, NoSuchNamespaceError):
            return None

    def iceberg_schema(self) -> Schema:
        """The record schema as an Iceberg schema (field ids assigned as a new table would)."""
        from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow
        from pyiceberg.schema import Schema, assign_fresh_schema_ids

        converted = visit_pyarrow(self.schema.arrow, _ConvertToIcebergWithoutIDs())
        assert isinstance(converted, Schema)
        return assign_fresh_schema_ids(converted)

    def open_or_create(self, log: Logger) -> Table:
        """The table; created, namespaces included, when it does not exist. Two first runs at
        once both succeed: whoever creates second loads what the first created."""
        table = self.load_table()
        if table is not None:
            self._check_compatible(table)
            return table
        from pyiceberg.exceptions import NamespaceAlreadyExistsError, TableAlreadyExistsError
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.transforms import IdentityTransform

        catalog = self.catalog()
        namespace = catalog.namespace_from(self.identifier)
        for depth in range(1, len(namespace) + 1):
            level = namespace[:depth]
            if catalog.namespace_exists(level):
                continue
            try:
                catalog.create_namespace(level)
            except NamespaceAlreadyExistsError:
                pass
            except Exception:
                # The SQL catalog reports a namespace created meanwhile as an integrity error.
                if not catalog.namespace_exists(level):
                    raise
        schema = self.iceberg_schema()
        columns = [PARTITION_COLUMN] if self.tenant is None else [TENANT_COLUMN, PARTITION_COLUMN]
        spec = PartitionSpec(
            *(
                PartitionField(
                    source_id=schema.find_field(column).field_id,
                    field_id=1000 + number,
                    transform=IdentityTransform(),
                    name=column,
                )
                for number, column in enumerate(columns)
            )
        )
        try:
            table = catalog.create_table(
                self.identifier,
                schema=schema,
                partition_spec=spec,
                properties={"comment": TABLE_DESCRIPTION},
            )
        except TableAlreadyExistsError:
            table = catalog.load_table(self.identifier)
            self._check_compatible(table)
            return table
        log.info("Created %s, partitioned by %s", self.describe(), " then ".join(columns))
        return table

    def _check_compatible(self, table: Table) -> None:
        """The table must take our rows as they are, and hold each day in files of its own (of
        one tenant, in a tenants' table). A single-account table and a tenants' table are never
        mixed: a run of one kind would replace every row of its days written by the other."""
        from pyiceberg.io.pyarrow import _check_pyarrow_schema_compatible
        from pyiceberg.transforms import DayTransform, IdentityTransform

        tenanted = _tenant_field_id(table.schema()) is not None
        if self.tenant is not None and not tenanted:
            raise LuccaConfigError(
                f"iceberg_table={self.identifier!r} holds a single-account table (no "
                f"{TENANT_COLUMN} column), whose days a run of tenant={self.tenant!r} would "
                "replace for every account. Choose another iceberg_table for the tenants, or "
                "run this account without tenant."
            )
        if self.tenant is None and tenanted:
            raise LuccaConfigError(
                f"iceberg_table={self.identifier!r} holds several Lucca accounts' rows (a "
                f"{TENANT_COLUMN} column), and a run without tenant would replace the days of "
                "every tenant. Set tenant, or choose another iceberg_table for this account."
            )
        try:
            _check_pyarrow_schema_compatible(
                table.schema(),
                provided_schema=self.schema.arrow,
                format_version=table.format_version,
            )
        except ValueError as exc:
            raise LuccaConfigError(
                f"iceberg_table={self.identifier!r} exists with a schema this provider cannot "
                f"write its records to ({exc}). Choose another iceberg_table, or move the "
                "existing table away; the provider creates its table on its first run."
            ) from exc
        field = table.schema().find_field(PARTITION_COLUMN)
        if not any(
            part.source_id == field.field_id
            and isinstance(part.transform, (IdentityTransform, DayTransform))
            for part in table.spec().fields
        ):
            raise LuccaConfigError(
                f"iceberg_table={self.identifier!r} exists but is not partitioned by "
                f"{PARTITION_COLUMN} (identity or day): a run replaces whole days, so each data "
                f"file must hold one day. Its partition spec is {table.spec()}."
            )
        if self.tenant is not None and _tenant_position(table.schema(), table.spec()) is None:
            raise LuccaConfigError(
                f"iceberg_table={self.identifier!r} has a {TENANT_COLUMN} column but is not "
                f"partitioned by identity({TENANT_COLUMN}): a run replaces its tenant's days, so "
                f"each data file must hold one tenant. Its partition spec is {table.spec()}."
            )

    def committed_counts(self, filters: ManifestFilters) -> dict[date, DayCount]:
        """Every day's rows and attended rows (of the sink's tenant), scanned from two columns
        of the current snapshot; the newest run snapshot's filters are checked first."""
        table = self.load_table()
        if table is None:
            return {}
        snapshots = sorted(table.metadata.snapshots, key=lambda s: s.timestamp_ms, reverse=True)
        check_run_filters(
            self.describe(),
            (dict(s.summary.additional_properties) for s in snapshots if s.summary is not None),
            filters,
            self.tenant,
        )
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.expressions.parser import parse

        # Tenant names are slugs (validate_tenant_name): nothing to quote.
        row_filter = (
            AlwaysTrue() if self.tenant is None else parse(f"{TENANT_COLUMN} = '{self.tenant}'")
        )
        rows = table.scan(row_filter=row_filter, selected_fields=COUNT_COLUMNS).to_arrow()
        return day_counts(self.schema.pa, rows)

    # ------------------------------------------------------------------ the run's commit

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
        first, last = window_bounds(days)
        rows = WindowRows(self.schema, days, records, self.tenant)
        table = self.open_or_create(log)
        written: list[DataFile] = []
        try:
            for data_file in self._write(table, rows.batches()):
                written.append(data_file)
        except BaseException:
            _remove_quietly(table.io, [data_file.file_path for data_file in written], log)
            raise
        properties = commit_metadata(fields, sum(rows.counts.values()), self.tenant)

        def attempt(number: int) -> tuple[int, int]:
            current = table if number == 1 else self.open_or_create(log)
            replaced = self._files_between(current, first, last)
            snapshot_id = self._overwrite(current, first, last, replaced, written, properties)
            return snapshot_id, len(replaced)

        try:
            snapshot_id, replaced = commit_with_retries(
                attempt,
                is_conflict=_is_conflict,
                retries=self.retry.retries,
                target=self.describe(),
                log=log,
                backoff=self.retry.backoff,
            )
        except LuccaStorageError as exc:
            if _is_conflict(exc.__cause__):
                # Every commit failed before the catalog took it: nothing references the files.
                _remove_quietly(table.io, [data_file.file_path for data_file in written], log)
            raise
        log.info(
            "Committed snapshot %d of %s: %s to %s, %d data files added, %d replaced",
            snapshot_id,
            self.describe(),
            first,
            last,
            len(written),
            replaced,
        )
        return Committed(rows.counts, snapshot_id)

    def _write(self, table: Table, batches: Iterable[pa.RecordBatch]) -> Iterator[DataFile]:
        """One data file per day (or per :data:`CHUNK_ROWS` rows of a bigger day), written as
        pyiceberg writes them (field ids, column metrics, ``data/session_end_on=<day>/``, or
        ``data/tenant=<name>/session_end_on=<day>/`` in a tenants' table), the
        days of up to :data:`CHUNK_ROWS` rows at a time in parallel: what a run holds in memory,
        whatever the length of its window. The batches come day after day."""
        from pyiceberg.io.pyarrow import pyarrow_to_schema, write_file
        from pyiceberg.partitioning import PartitionField, PartitionFieldValue, PartitionKey
        from pyiceberg.table import WriteTask
        from pyiceberg.transforms import IdentityTransform

        arrow = self.schema.pa
        spec, schema = table.spec(), table.schema()
        source = schema.find_field(PARTITION_COLUMN)
        tenant_id = _tenant_field_id(schema)
        if not spec.fields or not all(
            part.source_id == source.field_id
            or (part.source_id == tenant_id and isinstance(part.transform, IdentityTransform))
            for part in spec.fields
        ):
            yield from self._write_any_spec(table, batches)
            return
        to_partition = {
            part.field_id: part.transform.pyarrow_transform(source.field_type)
            for part in spec.fields
            if part.source_id == source.field_id
        }
        task_schema = pyarrow_to_schema(
            self.schema.arrow,
            name_mapping=schema.name_mapping,
            format_version=table.format_version,
        )
        write_uuid, counter = uuid.uuid4(), itertools.count(0)
        days: list[tuple[object, list[pa.RecordBatch]]] = []  # (day, its rows) to write
        pending = 0

        def value(part: PartitionField, day: object) -> object:
            if part.field_id not in to_partition:
                return self.tenant  # identity(tenant): every row of the run has its tenant
            return to_partition[part.field_id](arrow.array([day], arrow.date32()))[0].as_py()

        def task(day: object, rows: list[pa.RecordBatch]) -> WriteTask:
            values = [PartitionFieldValue(part, value(part, day)) for part in spec.fields]
            key = PartitionKey(values, spec, schema)
            return WriteTask(write_uuid, next(counter), task_schema, rows, partition_key=key)

        def flush() -> Iterator[DataFile]:
            tasks = [task(day, rows) for day, rows in days]
            days.clear()
            yield from write_file(table.io, table.metadata, iter(tasks))
            # Arrow's allocator keeps freed blocks for reuse: give them back, so that the
            # process's memory follows what the run holds, not the most it ever held.
            arrow.default_memory_pool().release_unused()

        for batch in batches:
            day = batch.column(PARTITION_COLUMN)[0].as_py()
            while pending + batch.num_rows > CHUNK_ROWS:
                room = CHUNK_ROWS - pending
                if room:
                    _add(days, day, batch.slice(0, room))
                    batch = batch.slice(room)
                yield from flush()
                pending = 0
            if batch.num_rows:
                _add(days, day, batch)
                pending += batch.num_rows
        if days:
            yield from flush()

    def _write_any_spec(
        self, table: Table, batches: Iterable[pa.RecordBatch]
    ) -> Iterator[DataFile]:
        """:meth:`_write` for a table whose partition spec has more fields than the day: each
        day's rows handed to pyiceberg, which splits them by partition."""
        from pyiceberg.io.pyarrow import _dataframe_to_data_files

        write_uuid, counter = uuid.uuid4(), itertools.count(0)
        for _, rows in itertools.groupby(
            batches, key=lambda batch: batch.column(PARTITION_COLUMN)[0].as_py()
        ):
            yield from _dataframe_to_data_files(
                table_metadata=table.metadata,
                df=self.schema.pa.Table.from_batches(list(rows), schema=self.schema.arrow),
                io=table.io,
                write_uuid=write_uuid,
                counter=counter,
            )

    def _files_between(self, table: Table, first: date, last: date) -> list[DataFile]:
        """The live data files of the days ``[first, last]``, each wholly inside them: of the
        sink's tenant alone when it has one (its partition value, not its column bounds, which
        Iceberg truncates, says whose a file is)."""
        files: list[DataFile] = []
        row_filter = _window_filter(first, last, self.tenant)
        for task in table.scan(row_filter=row_filter).plan_files():
            if self.tenant is not None and _tenant_of(table, task.file) != self.tenant:
                continue
            span = _days_of(table, task.file)
            if span is None or span[0] < first or span[1] > last:
                raise LuccaStorageError(
                    f"{self.describe()} has a data file with rows inside and outside "
                    f"{first} to {last} ({task.file.file_path}): it was not written by this "
                    "provider, and replacing the window would need rewriting it.",
                    phase="commit",
                )
            files.append(task.file)
        return files

    def _overwrite(
        self,
        table: Table,
        first: date,
        last: date,
        replaced: Iterable[DataFile],
        added: Iterable[DataFile],
        properties: dict[str, str],
    ) -> int:
        """One snapshot: ``replaced`` out, ``added`` in. Its conflict scope is the window (the
        tenant's days of it in a tenants' table): pyiceberg's own retry re-bases it only when no
        concurrent commit touched that scope, and raises ``ValidationException`` otherwise, so
        other tenants committing at the same time do not make it start again."""
        with table.transaction() as transaction:
            update = _replace_files(transaction, table, properties)
            with update:
                update.delete_by_predicate(_window_filter(first, last, self.tenant))
                for data_file in replaced:
                    update.delete_data_file(data_file)
                for data_file in added:
                    update.append_data_file(data_file)
        return update.snapshot_id

    # ------------------------------------------------------------------ maintenance

    def maintain(self, *, retention: timedelta, log: Logger) -> dict[str, int]:
        """Compact, expire snapshots, remove orphan files: what the weekly maintenance runs.

        - every day held in more than one data file (a day bigger than :data:`CHUNK_ROWS`, or
          files another engine added) is rewritten into one file (in a tenants' table, each
          tenant's day on its own: two tenants' rows never share a file), and the current
          snapshot's manifests are merged, in one snapshot; a run committing meanwhile makes it
          start again on the new snapshot (a run of another tenant only when it touched the
          same tenant's days), so it never brings back rows a run replaced;
        - snapshots older than ``retention`` are expired (the current one is always kept):
          time travel reaches back ``retention``;
        - files under the table's location that no remaining snapshot, manifest or metadata file
          references, and older than ``retention`` (and than :data:`ORPHAN_MIN_AGE`, which
          protects a run writing now), are deleted: the data of expired snapshots, and what
          killed runs and lost commit races left.

        :return: ``compacted_days``, ``compacted_files`` (data files rewritten),
            ``merged_manifests`` (manifests of the current snapshot rewritten),
            ``expired_snapshots``, ``orphan_files_removed``, ``orphan_bytes_removed``.
        """
        if retention < timedelta(0):
            raise LuccaConfigError(f"Invalid retention={retention!r}: expected a duration >= 0.")
        result = dict.fromkeys(
            (
                "compacted_days",
                "compacted_files",
                "merged_manifests",
                "expired_snapshots",
                "orphan_files_removed",
                "orphan_bytes_removed",
            ),
            0,
        )
        table = self.load_table()
        if table is None:
            log.info("%s does not exist yet: nothing to maintain.", self.describe())
            return result
        tenanted = _tenant_field_id(table.schema()) is not None
        compacted = self._compact(log, tenanted=tenanted)
        result["compacted_days"], result["compacted_files"], result["merged_manifests"] = compacted
        result["expired_snapshots"] = self._expire(retention, log)
        result["orphan_files_removed"], result["orphan_bytes_removed"] = self._remove_orphans(
            max(retention, ORPHAN_MIN_AGE), log
        )
        return result

    def _compact(self, log: Logger, *, tenanted: bool) -> tuple[int, int, int]:
        plan = self.retry.for_compaction(tenanted)

        def attempt(number: int) -> tuple[int, int, int]:
            table = self.load_table()
            assert table is not None  # maintain() checked, and tables are not dropped here
            snapshot = table.current_snapshot()
            if snapshot is None:
                return 0, 0, 0
            targets = [group for group in _day_files(table) if len(group.files) > 1]
            manifests = len(snapshot.manifests(table.io))
            if not targets and manifests <= 1:
                return 0, 0, 0
            written: list[str] = []
            try:
                self._rewrite(table, targets, written)
            except Exception as exc:
                if _is_conflict(exc):
                    _remove_quietly(table.io, written, log)
                raise
            return len(targets), sum(len(group.files) for group in targets), manifests

        days, files, manifests = commit_with_retries(
            attempt,
            is_conflict=_is_conflict,
            retries=plan.retries,
            target=self.describe(),
            log=log,
            backoff=plan.backoff,
        )
        if days or manifests:
            log.info(
                "Compacted %s: %d data files of %d days rewritten, %d manifests merged",
                self.describe(),
                files,
                days,
                manifests,
            )
        return days, files, manifests

    def _rewrite(self, table: Table, targets: Sequence[_DayFiles], written: list[str]) -> None:
        """Each target day read (one day in memory at a time) and written back as one file, all
        swapped in one snapshot whose conflict scope is those days (of their tenants, in a
        tenants' table), the manifests merged."""
        from pyiceberg.expressions import AlwaysTrue
        from pyiceberg.io.pyarrow import ArrowScan, _dataframe_to_data_files
        from pyiceberg.table import FileScanTask

        properties = {
            "lucca.maintenance": "compaction",
            "lucca.compacted_days": str(len(targets)),
            "lucca.provider_version": __version__,
        }
        write_uuid, counter = uuid.uuid4(), itertools.count(0)
        scan = ArrowScan(table.metadata, table.io, table.schema(), AlwaysTrue())
        with table.transaction() as transaction:
            update = _replace_files(transaction, table, properties, merge_min_count=2)
            with update:
                if targets:
                    update.delete_by_predicate(_groups_filter(targets))
                for group in targets:
                    rows = scan.to_table([FileScanTask(data_file) for data_file in group.files])
                    if "id" in rows.column_names:
                        rows = rows.sort_by("id")
                    for data_file in _dataframe_to_data_files(
                        table_metadata=table.metadata,
                        df=rows,
                        io=table.io,
                        write_uuid=write_uuid,
                        counter=counter,
                    ):
                        written.append(data_file.file_path)
                        update.append_data_file(data_file)
                    for data_file in group.files:
                        update.delete_data_file(data_file)

    def _expire(self, retention: timedelta, log: Logger) -> int:
        table = self.load_table()
        assert table is not None
        current = table.current_snapshot()
        horizon = datetime.now(timezone.utc) - retention
        horizon_ms = int(horizon.timestamp() * 1000)
        expired = [
            snapshot.snapshot_id
            for snapshot in table.snapshots()
            if snapshot.timestamp_ms < horizon_ms
            and (current is None or snapshot.snapshot_id != current.snapshot_id)
        ]
        if not expired:
            return 0
        table.maintenance.expire_snapshots().by_ids(expired).commit()
        log.info(
            "Expired %d snapshots of %s older than %s",
            len(expired),
            self.describe(),
            horizon.isoformat(timespec="seconds"),
        )
        return len(expired)

    def _remove_orphans(self, min_age: timedelta, log: Logger) -> tuple[int, int]:
        table = self.load_table()
        assert table is not None
        from pyiceberg.io.pyarrow import PyArrowFileIO

        io = table.io
        if not isinstance(io, PyArrowFileIO):
            log.warning(
                "Orphan files of %s not looked for: its FileIO (%s) cannot list files; "
                "set py-io-impl to pyiceberg.io.pyarrow.PyArrowFileIO.",
                self.describe(),
                type(io).__name__,
            )
            return 0, 0
        from pyarrow.fs import FileSelector, FileType

        scheme, netloc, root = io.parse_location(table.location(), io.properties)
        filesystem = io.fs_by_scheme(scheme, netloc)
        horizon = datetime.now(timezone.utc) - min_age
        listed = filesystem.get_file_info(
            FileSelector(root.rstrip("/"), recursive=True, allow_not_found=True)
        )
        # What the table references is read after the listing: a file committed meanwhile is
        # referenced by then (and young anyway).
        current = self.load_table() or table
        referenced = {
            io.parse_location(location, io.properties)[2] for location in _referenced(current)
        }
        removed, size = 0, 0
        for info in listed:
            if info.type != FileType.File or info.path in referenced:
                continue
            if info.base_name in _NEVER_ORPHANS or info.mtime is None:
                continue
            mtime = info.mtime if info.mtime.tzinfo else info.mtime.replace(tzinfo=timezone.utc)
            if mtime >= horizon:
                continue
            try:
                filesystem.delete_file(info.path)
            except FileNotFoundError:
                continue
            removed += 1
            size += info.size or 0
        if removed:
            log.info(
                "Removed %d orphan files (%d bytes) of %s, unreferenced since before %s",
                removed,
                size,
                self.describe(),
                horizon.isoformat(timespec="seconds"),
            )
        return removed, size


def _add(
    days: list[tuple[object, list[pa.RecordBatch]]], day: object, batch: pa.RecordBatch
) -> None:
    """``batch`` appended to the rows of ``day``, the last day of ``days`` or a new one."""
    if days and days[-1][0] == day:
        days[-1][1].append(batch)
    else:
        days.append((day, [batch]))


def _days_of(table: Table, data_file: DataFile) -> tuple[date, date] | None:
    """The first and last ``session_end_on`` of a data file, from its column bounds."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.types import DateType

    field_id = table.schema().find_field(PARTITION_COLUMN).field_id
    lower = (data_file.lower_bounds or {}).get(field_id)
    upper = (data_file.upper_bounds or {}).get(field_id)
    if lower is None or upper is None:
        return None
    epoch = date(1970, 1, 1)
    return (
        epoch + timedelta(days=int(from_bytes(DateType(), lower))),
        epoch + timedelta(days=int(from_bytes(DateType(), upper))),
    )


def _day_files(table: Table) -> list[_DayFiles]:
    """The live data files of the current snapshot by day, and by tenant in a tenants' table
    (files spanning days left out, files of no single tenant too, and days with delete files,
    which another engine wrote)."""
    tenanted = _tenant_field_id(table.schema()) is not None
    groups: dict[tuple[str, date], list[DataFile]] = {}
    with_deletes: set[tuple[str, date]] = set()
    for task in table.scan().plan_files():
        span = _days_of(table, task.file)
        if span is None or span[0] != span[1]:
            continue
        tenant = _tenant_of(table, task.file) if tenanted else ""
        if tenant is None:
            continue
        key = (tenant, span[0])
        groups.setdefault(key, []).append(task.file)
        if task.delete_files:
            with_deletes.add(key)
    return [
        _DayFiles(day, files, tenant or None)
        for (tenant, day), files in sorted(groups.items())
        if (tenant, day) not in with_deletes
    ]


def _tenant_field_id(schema: Schema) -> int | None:
    """The field id of the ``tenant`` column; None in a single-account table."""
    try:
        return schema.find_field(TENANT_COLUMN).field_id
    except ValueError:
        return None


def _tenant_position(schema: Schema, spec: PartitionSpec) -> int | None:
    """Where ``identity(tenant)`` is in a partition spec's values; None when not in it."""
    from pyiceberg.transforms import IdentityTransform

    field_id = _tenant_field_id(schema)
    for position, part in enumerate(spec.fields):
        if part.source_id == field_id and isinstance(part.transform, IdentityTransform):
            return position
    return None


def _tenant_of(table: Table, data_file: DataFile) -> str | None:
    """The tenant of a data file, from its partition value (its column bounds may be truncated);
    None when its partition spec does not hold the tenant."""
    position = _tenant_position(table.schema(), table.specs()[data_file.spec_id])
    if position is None:
        return None
    value = data_file.partition[position]
    return value if isinstance(value, str) else None


def _groups_filter(groups: Sequence[_DayFiles]) -> BooleanExpression:
    """The rows of ``groups``: their days, of their tenants in a tenants' table (a day alone
    would make the compaction's conflict scope every tenant's rows of that day)."""
    from pyiceberg.expressions import Or
    from pyiceberg.expressions.parser import parse

    untenanted = [f"'{group.day.isoformat()}'" for group in groups if group.tenant is None]
    scopes: list[BooleanExpression] = []
    if untenanted:
        scopes.append(parse(f"{PARTITION_COLUMN} IN ({', '.join(untenanted)})"))
    scopes.extend(
        parse(
            f"{TENANT_COLUMN} = '{group.tenant}' AND {PARTITION_COLUMN} = '{group.day.isoformat()}'"
        )
        for group in groups
        if group.tenant is not None
    )
    return functools.reduce(Or, scopes)


def _replace_files(
    transaction: Transaction,
    table: Table,
    properties: dict[str, str],
    *,
    merge_min_count: int | None = None,
) -> _OverwriteFiles:
    """The snapshot producer of every commit of this sink (see :func:`_replace_files_class`)."""
    from pyiceberg.table import TableProperties
    from pyiceberg.table.snapshots import Operation

    producer = _replace_files_class()(
        operation=Operation.OVERWRITE if table.current_snapshot() else Operation.APPEND,
        transaction=transaction,
        io=table.io,
        snapshot_properties=properties,
    )
    if merge_min_count is None:
        merge_min_count = int(
            table.properties.get(
                TableProperties.MANIFEST_MIN_MERGE_COUNT,
                TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT,
            )
        )
    producer.merge_min_count = merge_min_count  # type: ignore[attr-defined]
    return producer


@functools.cache
def _replace_files_class() -> type[_OverwriteFiles]:
    """pyiceberg's overwrite producer with two fixes to its manifests (pyiceberg 0.12).

    pyiceberg carries a manifest into the next snapshot even when every entry of it was deleted:
    with a window replaced per run, two more manifests per run, forever, each read by every
    query planning. Here a manifest without a live file is dropped (Iceberg's Java writer does
    the same), and small manifests are merged as Iceberg's writers merge them on commit, once
    there are ``commit.manifest.min-count-to-merge`` of them (maintenance: two).
    """
    from pyiceberg.manifest import ManifestContent, ManifestFile
    from pyiceberg.table import TableProperties
    from pyiceberg.table.update.snapshot import _ManifestMergeManager, _OverwriteFiles

    class ReplaceFiles(_OverwriteFiles):
        merge_min_count = TableProperties.MANIFEST_MIN_MERGE_COUNT_DEFAULT

        def _existing_manifests(self) -> list[ManifestFile]:
            return [
                manifest
                for manifest in super()._existing_manifests()
                if manifest.has_added_files() or manifest.has_existing_files()
            ]

        def _process_manifests(self, manifests: list[ManifestFile]) -> list[ManifestFile]:
            target = int(
                self._transaction.table_metadata.properties.get(
                    TableProperties.MANIFEST_TARGET_SIZE_BYTES,
                    TableProperties.MANIFEST_TARGET_SIZE_BYTES_DEFAULT,
                )
            )
            data = [m for m in manifests if m.content == ManifestContent.DATA]
            deletes = [m for m in manifests if m.content != ManifestContent.DATA]
            merger = _ManifestMergeManager(
                target_size_bytes=target,
                min_count_to_merge=self.merge_min_count,
                merge_enabled=True,
                snapshot_producer=self,
            )
            return merger.merge_manifests(data) + deletes

    return ReplaceFiles


def _referenced(table: Table) -> set[str]:
    """Every file the table's metadata reaches: metadata files (current and logged), statistics,
    and for each snapshot its manifest list, manifests and live data and delete files."""
    metadata = table.metadata
    locations: set[str] = {table.metadata_location}
    locations.update(entry.metadata_file for entry in metadata.metadata_log)
    locations.update(stats.statistics_path for stats in metadata.statistics)
    locations.update(stats.statistics_path for stats in metadata.partition_statistics)
    seen_manifests: set[str] = set()
    for snapshot in metadata.snapshots:
        locations.add(snapshot.manifest_list)
        for manifest in snapshot.manifests(table.io):
            locations.add(manifest.manifest_path)
            if manifest.manifest_path in seen_manifests:
                continue
            seen_manifests.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=True):
                locations.add(entry.data_file.file_path)
    return locations


def _window_filter(first: date, last: date, tenant: str | None = None) -> BooleanExpression:
    """``session_end_on`` between ``first`` and ``last``, both included; of ``tenant`` only,
    when given."""
    from pyiceberg.expressions.parser import parse

    column = PARTITION_COLUMN
    days = f"{column} >= '{first.isoformat()}' AND {column} <= '{last.isoformat()}'"
    # Tenant names are slugs (validate_tenant_name): nothing to quote.
    return parse(days if tenant is None else f"{TENANT_COLUMN} = '{tenant}' AND {days}")


def _is_conflict(error: BaseException | None) -> bool:
    """Another writer committed first: the catalog refused the commit (its pointer moved), or
    pyiceberg's re-basing found that writer's change in this commit's scope. Either way the
    commit did not land."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException

    return isinstance(error, (CommitFailedException, ValidationException))


def _remove_quietly(io: FileIO, paths: Iterable[str], log: Logger) -> None:
    """Delete files no snapshot references (what is left, maintenance finds as orphans)."""
    failed = 0
    for path in paths:
        try:
            io.delete(path)
        except FileNotFoundError:
            pass
        except Exception:
            failed += 1
    if failed:
        log.warning("%d unreferenced data files could not be removed; maintenance will.", failed)


__all__ = ["CHUNK_ROWS", "ORPHAN_MIN_AGE", "IcebergSink", "import_pyiceberg"]
