"""OpenLineage facets of the Lucca operators (the ``openlineage`` extra).

The OpenLineage provider asks an operator for its datasets when the task starts, completes or
fails. The answer names the Lucca endpoint of the account as the input and the dataset or table as
the output, following OpenLineage's naming conventions, so a lineage backend joins it with what
other jobs read from the same bucket or table. Everything here is imported lazily: without the
provider, the operators never call these methods and import nothing of OpenLineage.

Nothing here reads or emits a credential: the account's base URL comes from the connection's
validated Host only, and URLs lose their user part (an Airflow connection id, or a database
catalog's password) before they are named.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset

#: The endpoint the operators read, as a dataset name (a path without its leading slash).
LUCCA_DATASET_NAME = "talent-training/api/v2/realized-trainings"
#: Reading the days' manifests for the output statistics stops after this many seconds (the
#: provider gives the whole event ``[openlineage] execution_timeout``, 10 s by default); figures
#: not had by then are left out.
STATISTICS_BUDGET_SECONDS = 5.0
#: Manifests read at once on an object store.
MANIFEST_READERS = 16
_DEFAULT_PORTS = {"http": 80, "https": 443}
T = TypeVar("T")

#: The fields of a record as Lucca sends it (the jsonl files keep records as received, fields
#: Lucca adds later included): name, JSON type, description.
_JSON_FIELDS: tuple[tuple[str, str, str | None], ...] = (
    ("id", "integer", None),
    ("ownerId", "integer", "the employee"),
    ("training", "object", None),
    ("trainingDemandId", "integer", None),
    ("sessionId", "integer", None),
    ("sessionStartsOn", "string", "ISO date"),
    ("sessionEndsOn", "string", "ISO date; the day partition"),
    ("hasAttended", "boolean", None),
    ("durationInHours", "number", "hours, two decimals"),
)
_JSON_TRAINING_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "integer"),
    ("title", "string"),
    ("categoryId", "integer"),
    ("providerUrl", "string"),
    ("level", "string"),
)


class LineageMixin:
    """What the OpenLineage listener asks a Lucca operator about its inputs and outputs.

    The start event names the datasets; the complete event adds the output statistics of what
    the run committed (read back from the manifests, the Delta commit or the Iceberg snapshot)
    and the run's parameters; the fail event names the datasets only (the provider adds the
    error itself).
    """

    #: The summary the last ``execute`` returned (an ``ExtractionSummary`` or
    #: ``ReconcileSummary``); None before, or when it failed.
    run_summary: Any = None

    def get_openlineage_facets_on_start(self) -> OperatorLineage[Any, Any]:
        return self._lineage(statistics=False)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        return self._lineage(statistics=True)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        return self._lineage(statistics=False)

    def _lineage(self, *, statistics: bool) -> OperatorLineage[Any, Any]:
        from airflow.providers.openlineage.extractors import OperatorLineage

        summary = self.run_summary if statistics else None
        if not isinstance(summary, dict):
            summary = None
        lucca = _or_none(self._lucca_dataset)
        output = _or_none(lambda: _Output(self).dataset(summary))
        return OperatorLineage(
            inputs=[] if lucca is None else [lucca],
            outputs=[] if output is None else [output],
            run_facets={} if summary is None else {"lucca_run": _run_facet(summary)},
        )

    def _lucca_dataset(self) -> InputDataset | None:
        """The account's realized-trainings endpoint; None when the connection is unusable (the
        task then fails on it, with its own message)."""
        from openlineage.client.event_v2 import InputDataset
        from openlineage.client.facet_v2 import datasource_dataset

        operator: Any = self
        base_url = operator.hook.client_config.base_url  # checked, without credentials or path
        namespace = lucca_namespace(base_url)
        return InputDataset(
            namespace=namespace,
            name=LUCCA_DATASET_NAME,
            facets={
                "dataSource": datasource_dataset.DatasourceDatasetFacet(
                    name=namespace, uri=namespace
                ),
                "schema": json_schema_facet(),
            },
        )


def _or_none(build: Callable[[], T]) -> T | None:
    """``build()``, or None when it fails: a dataset that cannot be described (an unusable
    connection, an unreachable catalog) is left out of the event, the others are still sent.
    The exception's text is not logged: it may quote a connection."""
    try:
        return build()
    except Exception as exc:
        logging.getLogger(__name__).warning(
            "OpenLineage: a dataset of this task could not be described (%s)", type(exc).__name__
        )
        return None


def lucca_namespace(base_url: str) -> str:
    """``scheme://host[:port]`` of the account, without the scheme's default port."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}"


def storage_dataset_name(url: str, azure_account: str | None = None) -> tuple[str, str]:
    """``(namespace, name)`` of a storage location after OpenLineage's naming conventions.

    ``s3://bucket/key`` -> ``("s3://bucket", "key")`` (gs likewise), a local path ->
    ``("file", "/absolute/path")``, Azure Data Lake -> ``("abfss://container@account.dfs.core.
    windows.net", "path")``. The user part of the URL (the Airflow connection id of
    ``s3://aws_default@bucket/key``) is dropped: it names credentials, not data.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    path = parts.path.rstrip("/")
    if scheme in ("", "file", "local"):
        return "file", path or "/"
    host = parts.hostname or ""
    key = path.lstrip("/")
    if scheme in ("s3", "s3a", "s3n"):
        return f"s3://{host}", key
    if scheme in ("gs", "gcs"):
        return f"gs://{host}", key
    if scheme in ("abfs", "abfss", "az", "adl"):
        if host.endswith(".dfs.core.windows.net") and parts.username:
            # abfss://container@account.dfs.core.windows.net/path: the account is in the host.
            return f"abfss://{parts.username}@{host}", key
        if azure_account:
            return f"abfss://{host}@{azure_account}.dfs.core.windows.net", key
        return f"abfss://{host}", key
    return f"{scheme}://{host}", key


def json_schema_facet() -> Any:
    """The record's JSON fields, as Lucca sends them and the jsonl files keep them."""
    from openlineage.client.facet_v2 import schema_dataset

    Field = schema_dataset.SchemaDatasetFacetFields
    training = [Field(name=name, type=kind) for name, kind in _JSON_TRAINING_FIELDS]
    return schema_dataset.SchemaDatasetFacet(
        fields=[
            Field(
                name=name,
                type=kind,
                description=description,
                fields=training if name == "training" else [],
            )
            for name, kind, description in _JSON_FIELDS
        ]
    )


def arrow_schema_facet(arrow_schema: Any) -> Any:
    """The columns of the Parquet files or the table, with their Arrow types."""
    from openlineage.client.facet_v2 import schema_dataset

    Field = schema_dataset.SchemaDatasetFacetFields

    def fields(arrow_fields: Iterable[Any]) -> list[Any]:
        result = []
        for field in arrow_fields:
            kind = field.type
            nested = fields(kind) if hasattr(kind, "num_fields") and kind.num_fields else []
            result.append(
                Field(name=field.name, type="struct" if nested else str(kind), fields=nested)
            )
        return result

    return schema_dataset.SchemaDatasetFacet(fields=fields(arrow_schema))


class _Output:
    """The operator's output: its dataset's name, schema and the statistics of a run."""

    def __init__(self, operator: Any) -> None:
        self.operator = operator
        self.file_format: str = operator.file_format
        self.tenant: str | None = operator._tenant()

    def dataset(self, summary: dict[str, Any] | None) -> OutputDataset | None:
        """The output dataset; None for an Iceberg table that does not exist yet and whose
        catalog does not tell where it will be (the start of a first run)."""
        from openlineage.client.event_v2 import OutputDataset
        from openlineage.client.facet_v2 import output_statistics_output_dataset as stats_facet

        facets: dict[str, Any] = {"schema": self.schema()}
        if self.file_format == "iceberg":
            table, catalog, location = self._iceberg()
            if location is None:
                return None
            namespace, name = storage_dataset_name(location)
            facets |= catalog.facets(self.operator.iceberg_table)
        else:
            table = None
            namespace, name = storage_dataset_name(self._files_url(), self._azure_account())
            if self.file_format == "delta":
                facets["storage"] = _storage_facet("delta", "parquet")
        output_facets: dict[str, Any] = {}
        if summary is not None:
            figures = self.statistics(summary, table)
            output_facets["outputStatistics"] = stats_facet.OutputStatisticsOutputDatasetFacet(
                rowCount=figures.get("rowCount"),
                size=figures.get("size"),
                fileCount=figures.get("fileCount"),
            )
        return OutputDataset(
            namespace=namespace, name=name, facets=facets, outputFacets=output_facets
        )

    def schema(self) -> Any:
        if self.file_format == "jsonl":
            return json_schema_facet()
        from airflow_provider_lucca.extraction.schema import RecordSchema, import_pyarrow

        table = self.file_format in ("delta", "iceberg")
        return arrow_schema_facet(
            RecordSchema(
                import_pyarrow(self.file_format, self.file_format),
                partition_column=table,
                tenant_column=table and self.tenant is not None,
            ).arrow
        )

    def _files_url(self) -> str:
        """The files' root (the tenant's directory with a tenant), or the Delta table's root."""
        from airflow_provider_lucca.operators.realized_trainings import (
            TENANT_DIR_PREFIX,
            storage_url,
        )

        url = storage_url(self.operator.output_path)
        if self.file_format != "delta" and self.tenant is not None:
            url += f"/{TENANT_DIR_PREFIX}{self.tenant}"
        return url

    def _azure_account(self) -> str | None:
        """The storage account of an Azure URL's connection (never its key)."""
        parts = urlsplit(self._files_url())
        if parts.scheme not in ("abfs", "abfss", "az", "adl") or not parts.username:
            return None
        if (parts.hostname or "").endswith(".dfs.core.windows.net"):
            return None
        try:
            from airflow.sdk import BaseHook

            connection = BaseHook.get_connection(parts.username)
        except Exception:
            return None
        extra = connection.extra_dejson
        account = extra.get("account_name") or connection.host or connection.login
        return str(account).split(".")[0] if account else None

    def _iceberg(self) -> tuple[Any, _Catalog, str | None]:
        """The Iceberg table (None when it does not exist yet), its catalog's description, and
        the table's location (where the catalog will put it, for a table not created yet)."""
        from airflow_provider_lucca.operators.table_sinks import (
            iceberg_catalog_properties,
            iceberg_sink,
            validate_table_identifier,
        )

        conn_id = self.operator.iceberg_conn_id
        identifier = validate_table_identifier(self.operator.iceberg_table)
        catalog = _Catalog(conn_id, iceberg_catalog_properties(conn_id))
        sink = iceberg_sink(conn_id, identifier)
        table = sink.load_table()
        if table is not None:
            return table, catalog, str(table.location())
        namespace, _, name = identifier.rpartition(".")
        try:
            # pyiceberg's own rule for a new table's location: under its namespace's location...
            catalog_object: Any = sink.catalog()
            location = catalog_object._resolve_table_location(None, namespace, name)
        except Exception:
            # ... or, for a namespace not created yet either, ``<warehouse>/<namespace>/<table>``
            # (a REST catalog decides for itself: then the output is left out until it exists).
            warehouse = catalog.raw_warehouse
            is_rest = catalog.kind == "rest"
            location = None if is_rest or not warehouse else f"{warehouse}/{namespace}/{name}"
        return None, catalog, location

    # -- statistics of what the run committed

    def statistics(self, summary: dict[str, Any], table: Any) -> dict[str, int]:
        """``rowCount``, ``size`` (bytes) and ``fileCount`` of what the run wrote; a figure that
        cannot be read back is left out rather than guessed."""
        reconcile = "re_extracted" in summary
        rows = summary["records_rewritten"] if reconcile else summary["records"]
        figures: dict[str, int] = {"rowCount": int(rows)}
        if self.file_format == "delta":
            versions = summary["table_versions"] if reconcile else [summary["table_version"]]
            figures |= self._delta_figures([v for v in versions if v is not None])
        elif self.file_format == "iceberg":
            snapshots = summary["table_versions"] if reconcile else [summary["table_version"]]
            figures |= _iceberg_figures(table, [s for s in snapshots if s is not None])
        else:
            if reconcile:
                days = [day for window in summary["re_extracted"] for day in _days(window)]
                token = None
            else:
                days = sorted(summary["partitions"])
                token = summary["run_token"]
            figures |= self._manifest_figures(days, token)
        return figures

    def _manifest_figures(self, days: list[str], token: str | None) -> dict[str, int]:
        """Bytes and files of the days' manifests; nothing when one cannot be read in time or
        another run committed a day since (its token differs)."""
        from airflow_provider_lucca.extraction.commit import MANIFEST_NAME, PARTITION_KEY

        reader = _Reader(self._files_url())
        deadline = time.monotonic() + STATISTICS_BUDGET_SECONDS

        def read(day: str) -> dict[str, Any] | None:
            if time.monotonic() > deadline:
                return None
            manifest: dict[str, Any] = json.loads(
                reader.read(f"{PARTITION_KEY}={day}/{MANIFEST_NAME}")
            )
            return manifest

        if not days:
            return {"size": 0, "fileCount": 0}
        try:
            with ThreadPoolExecutor(max_workers=min(MANIFEST_READERS, len(days))) as pool:
                manifests = list(pool.map(read, days))
        except Exception:
            return {}
        size = files = 0
        for manifest in manifests:
            if manifest is None or (token is not None and manifest["run"]["token"] != token):
                return {}
            files += len(manifest["files"])
            size += sum(int(entry["bytes"]) for entry in manifest["files"])
        return {"size": size, "fileCount": files}

    def _delta_figures(self, versions: list[int]) -> dict[str, int]:
        """Bytes and files the commits added, from their log entries (one read each; not
        through delta-rs, whose runtime may not survive the listener's fork)."""
        reader = _Reader(storage_url_of(self.operator.output_path))
        size = files = 0
        try:
            for version in versions:
                text = reader.read(f"_delta_log/{version:020d}.json").decode()
                for line in text.splitlines():
                    action = json.loads(line) if line.strip() else {}
                    if "add" in action:
                        files += 1
                        size += int(action["add"]["size"])
        except Exception:
            return {}
        return {"size": size, "fileCount": files}


class _Reader:
    """Reads files under a storage URL through a filesystem of this process.

    The OpenLineage listener describes a task in a forked child by default: the task's cached
    object-store filesystems (s3fs, gcsfs, adlfs) are not fork-safe, so ``ObjectStoragePath``'s
    cached store cannot be used there. ``get_fs`` builds one for this process (fsspec's instance
    cache is per process), with the credentials of the URL's connection.
    """

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.local = parts.scheme in ("", "file", "local")
        self.scheme = parts.scheme
        self.conn_id = parts.username or None
        self.root = parts.path.rstrip("/") if self.local else f"{parts.hostname}{parts.path}"

    def read(self, relative: str) -> bytes:
        path = f"{self.root.rstrip('/')}/{relative}"
        if self.local:
            with open(path, "rb") as stream:
                return stream.read()
        from airflow.sdk.io import get_fs

        data: bytes = get_fs(self.scheme, self.conn_id).cat_file(path)
        return data


def storage_url_of(output_path: object) -> str:
    from airflow_provider_lucca.operators.realized_trainings import storage_url

    return storage_url(output_path)


def _iceberg_figures(table: Any, snapshot_ids: list[int]) -> dict[str, int]:
    """Bytes and data files the snapshots added, from their summaries."""
    if table is None:
        return {}
    size = files = 0
    for snapshot_id in snapshot_ids:
        snapshot = table.snapshot_by_id(snapshot_id)
        if snapshot is None or snapshot.summary is None:
            return {}
        summary = snapshot.summary.additional_properties
        try:
            size += int(summary.get("added-files-size", 0))
            files += int(summary.get("added-data-files", 0))
        except ValueError:
            return {}
    return {"size": size, "fileCount": files}


def _days(window: dict[str, str]) -> list[str]:
    """The ISO days of ``[from, until)``."""
    first, until = date.fromisoformat(window["from"]), date.fromisoformat(window["until"])
    return [(first + timedelta(days=n)).isoformat() for n in range((until - first).days)]


def _storage_facet(layer: str, file_format: str) -> Any:
    from openlineage.client.facet_v2 import storage_dataset

    return storage_dataset.StorageDatasetFacet(storageLayer=layer, fileFormat=file_format)


class _Catalog:
    """An Iceberg catalog as lineage names it: its kind, name and URIs without credentials."""

    def __init__(self, name: str, properties: dict[str, str]) -> None:
        self.name = name
        uri = properties.get("uri")
        self.kind = properties.get("type") or _catalog_kind(uri or "")
        self.uri = _without_credentials(uri) if uri else None
        warehouse = properties.get("warehouse")
        self.warehouse = _without_credentials(warehouse) if warehouse else None
        #: Where pyiceberg puts new tables (credentials, if any, are dropped when it is named).
        self.raw_warehouse = warehouse.rstrip("/") if warehouse else None

    def facets(self, table: str) -> dict[str, Any]:
        """The catalog facet, and the table's catalog identifier as a symlink."""
        from openlineage.client.facet_v2 import catalog_dataset, symlinks_dataset

        return {
            "catalog": catalog_dataset.CatalogDatasetFacet(
                framework="iceberg",
                type=self.kind,
                name=self.name,
                metadataUri=self.uri,
                warehouseUri=self.warehouse,
                source="airflow-provider-lucca",
            ),
            "symlinks": symlinks_dataset.SymlinksDatasetFacet(
                identifiers=[
                    symlinks_dataset.Identifier(
                        namespace=self.uri or f"iceberg://{self.name}", name=table, type="TABLE"
                    )
                ]
            ),
            "storage": _storage_facet("iceberg", "parquet"),
        }


def _catalog_kind(uri: str) -> str:
    """pyiceberg's inference of a catalog's type from its URI."""
    scheme = uri.partition("://")[0].lower()
    if scheme in ("http", "https"):
        return "rest"
    if scheme == "thrift":
        return "hive"
    return "sql" if scheme else "unknown"


def _without_credentials(url: str) -> str:
    """``url`` without its user part, query or fragment (a database URL's password, a token).

    The user part ends at the LAST ``@`` of the text: database drivers accept a password holding
    an unencoded ``/`` (``postgresql://lucca:2024/Hiver@db/iceberg``), where ``urlsplit`` would
    end the authority at that ``/`` and keep the password in the path.
    """
    url = url.split("#", 1)[0].split("?", 1)[0]
    scheme, separator, rest = url.partition("://")
    if not separator:
        return url if "@" not in url else ""
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    try:
        parts = urlsplit(f"{scheme}://{rest}")
        host = parts.hostname
        port = parts.port
    except ValueError:
        return ""
    if not parts.netloc:  # sqlite:////path/catalog.db: no user part to drop
        return url
    if host is None:
        return urlunsplit((parts.scheme, "", parts.path, "", ""))
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _run_facet(summary: dict[str, Any]) -> Any:
    """The run's parameters and counts as an ``ExecutionParametersRunFacet``."""
    from openlineage.client.facet_v2 import execution_parameters_run

    keys = (
        "file_format",
        "tenant",
        "window",
        "extracted_window",
        "records",
        "received",
        "reported_count",
        "requests",
        "retries",
        "reads",
        "table_version",
        "run_token",
        "months",
        "re_extracted",
        "records_rewritten",
        "table_versions",
        "check_requests",
    )
    parameters = [
        execution_parameters_run.ExecutionParameter(
            key=f"lucca.{key}",
            value=summary[key] if isinstance(summary[key], str) else json.dumps(summary[key]),
        )
        for key in keys
        if key in summary
    ]
    return execution_parameters_run.ExecutionParametersRunFacet(parameters=parameters)
