"""Table sinks built from operator parameters: the Airflow connection in a Delta table's URL
becomes delta-rs storage options, as ``ObjectStoragePath`` resolves it for the files formats; an
Iceberg catalog connection becomes pyiceberg catalog properties.

The options hold credentials: they go to delta-rs / pyiceberg only, never into a log, an XCom or
an error.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.errors import LuccaStorageError, is_outage

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from airflow_provider_lucca.extraction.sinks.delta import DeltaSink
    from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink

DEFAULT_ICEBERG_CONN_ID = "iceberg_default"
#: ``namespace.table`` (namespaces may nest: ``lake.hr.realized_trainings``), plain identifiers.
_TABLE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")

S3_SCHEMES = ("s3", "s3a")
GCS_SCHEMES = ("gs", "gcs")
AZURE_SCHEMES = ("abfs", "abfss", "az", "adl")


def delta_sink(url: str, *, tenant: str | None = None) -> DeltaSink:
    """The Delta sink of an ``output_path`` URL (already checked by ``storage_url``); with a
    tenant, the table holds several accounts and the run replaces this one's rows only."""
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_lucca.extraction.sinks.delta import DeltaSink

    uri, options = delta_location(url)
    return DeltaSink(uri, options, files=ObjectStoragePath(url), tenant=tenant)


def validate_table_identifier(value: object) -> str:
    """``namespace.table``, checked when the DAG is parsed."""
    if not isinstance(value, str) or not _TABLE_IDENTIFIER.fullmatch(value.strip()):
        raise LuccaConfigError(
            f"Invalid iceberg_table={value!r}: expected namespace.table, e.g. "
            "'lucca.realized_trainings' (letters, digits and underscores)."
        )
    return value.strip()


def iceberg_asset_uri(conn_id: str, table: str) -> str:
    """The Asset URI of an Iceberg table: its catalog connection and its identifier."""
    return f"iceberg://{conn_id}/{table.replace('.', '/')}"


def iceberg_sink(conn_id: str, table: str, *, tenant: str | None = None) -> IcebergSink:
    """The Iceberg sink of ``table`` in the catalog that connection ``conn_id`` describes (see
    :func:`iceberg_catalog_properties`); the catalog is named after the connection. With a
    tenant, the table holds several accounts and the run replaces this one's rows only."""
    from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink

    properties = iceberg_catalog_properties(conn_id)

    def load() -> Catalog:
        from pyiceberg.catalog import load_catalog

        try:
            return load_catalog(conn_id, **properties)
        except Exception as first:
            # Two first runs at once race on the SQL catalog's own tables: once more finds them.
            try:
                return load_catalog(conn_id, **properties)
            except Exception as second:
                if is_outage(second):
                    raise LuccaStorageError(
                        f"The Iceberg catalog of connection {conn_id!r} could not be reached "
                        f"({type(second).__name__}: {_redacted(str(second), properties)}); "
                        "another attempt may succeed.",
                        phase="open",
                    ) from second
                raise LuccaConfigError(
                    f"The Iceberg catalog of connection {conn_id!r} could not be loaded "
                    f"({type(first).__name__}: {_redacted(str(first), properties)}). "
                    f"{ICEBERG_CONNECTION_FORM}"
                ) from first

    return IcebergSink(load, table, catalog_name=conn_id, tenant=tenant)


#: What an Iceberg catalog connection looks like, for error messages (no values of the user's).
ICEBERG_CONNECTION_FORM = (
    "Expected the pyiceberg catalog properties as the connection's extra JSON, e.g. "
    '{"type": "sql", "uri": "sqlite:////data/iceberg/catalog.db", "warehouse": '
    '"s3://lake/iceberg", "aws_conn_id": "aws_default"}, or {"type": "rest", "warehouse": '
    '"..."} with the REST catalog URL as host and its client id / secret as login / password.'
)


def iceberg_catalog_properties(conn_id: str) -> dict[str, str]:
    """pyiceberg catalog properties from an Airflow connection.

    - the extra JSON holds the properties as pyiceberg names them (``type``: ``sql``, ``rest``,
      ``glue``...; ``uri``, ``warehouse``, ``s3.*``, ``credential``...);
    - the host, when set and the extra has no ``uri``, is the catalog's URI (a REST catalog's
      URL: ``https://`` is assumed without a scheme; the port and schema join it);
    - login / password are a REST catalog's OAuth client id and secret (``credential``), a
      password alone its bearer ``token``;
    - extra ``aws_conn_id`` names an Amazon connection whose credentials (resolved by the
      Amazon provider: keys, assumed role, profile...), region and endpoint (MinIO and other
      S3-compatible stores) become the ``s3.*`` properties, unless the extra sets them itself.

    The properties hold credentials: they are never logged, nor put into an error message.
    """
    from airflow.sdk import BaseHook

    try:
        connection = BaseHook.get_connection(conn_id)
    except Exception as exc:
        raise LuccaConfigError(
            f"The Iceberg catalog connection {conn_id!r} could not be read "
            f"({type(exc).__name__}). {ICEBERG_CONNECTION_FORM}"
        ) from exc
    raw = connection.extra
    try:
        extra = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise LuccaConfigError(
            f"The extra of connection {conn_id!r} is not valid JSON. {ICEBERG_CONNECTION_FORM}"
        ) from exc
    if not isinstance(extra, dict):
        raise LuccaConfigError(
            f"The extra of connection {conn_id!r} is not a JSON object. {ICEBERG_CONNECTION_FORM}"
        )
    aws_conn_id = extra.pop("aws_conn_id", None)
    properties: dict[str, str] = {}
    for key, value in extra.items():
        if isinstance(value, bool):
            properties[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            properties[key] = str(value)
        elif value is not None:
            raise LuccaConfigError(
                f"The extra of connection {conn_id!r} has a {type(value).__name__} under "
                f"{key!r}: pyiceberg catalog properties are strings, numbers or booleans. "
                f"{ICEBERG_CONNECTION_FORM}"
            )
    if connection.host and "uri" not in properties:
        properties["uri"] = _catalog_uri(connection.host, connection.port, connection.schema)
    if "type" not in properties and "uri" not in properties:
        raise LuccaConfigError(
            f"Connection {conn_id!r} does not describe an Iceberg catalog: it has neither a "
            f"'type' nor a 'uri' (or host). {ICEBERG_CONNECTION_FORM}"
        )
    if _is_rest(properties):
        if connection.login and connection.password and "credential" not in properties:
            properties["credential"] = f"{connection.login}:{connection.password}"
        elif connection.password and not connection.login and "token" not in properties:
            properties["token"] = connection.password
    if aws_conn_id is not None:
        if not isinstance(aws_conn_id, str) or not aws_conn_id:
            raise LuccaConfigError(
                f"The extra of connection {conn_id!r} has an invalid 'aws_conn_id': expected the "
                f"id of an Amazon Web Services connection. {ICEBERG_CONNECTION_FORM}"
            )
        for key, value in _aws_iceberg_properties(aws_conn_id).items():
            properties.setdefault(key, value)
    return properties


def _catalog_uri(host: str, port: int | None, schema: str | None) -> str:
    if "://" in host:
        return host.rstrip("/")
    uri = f"https://{host}"
    if port:
        uri += f":{port}"
    if schema:
        uri += "/" + schema.strip("/")
    return uri


def _is_rest(properties: dict[str, str]) -> bool:
    kind = properties.get("type")
    if kind is not None:
        return kind.lower() == "rest"
    return properties.get("uri", "").startswith(("http://", "https://"))


def _aws_iceberg_properties(conn_id: str) -> dict[str, str]:
    """The ``s3.*`` properties of an Amazon connection (as :func:`aws_storage_options` reads it
    for delta-rs)."""
    options = aws_storage_options(conn_id)
    names = {
        "AWS_ACCESS_KEY_ID": "s3.access-key-id",
        "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
        "AWS_SESSION_TOKEN": "s3.session-token",
        "AWS_REGION": "s3.region",
        "AWS_ENDPOINT_URL": "s3.endpoint",
    }
    return {names[key]: value for key, value in options.items() if key in names}


def _redacted(text: str, properties: dict[str, str]) -> str:
    """``text`` without any property value that could be a secret, nor the password of a URI
    (pyiceberg's errors quote a catalog ``uri`` it cannot use)."""
    secrets = [
        value
        for key, value in properties.items()
        if key not in ("type", "uri", "warehouse") and len(value) >= 4
    ]
    for key in ("uri", "warehouse"):
        try:
            password = urlsplit(properties.get(key, "")).password
        except ValueError:
            password = None
        if password:
            secrets.append(password)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def delta_location(url: str) -> tuple[str, dict[str, str]]:
    """``(table URI for delta-rs, storage options)`` of ``scheme://conn_id@bucket/path``."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return parts.path, {}
    conn_id = parts.username or None
    path = parts.path.rstrip("/")
    if parts.scheme in S3_SCHEMES:
        return f"s3://{parts.hostname}{path}", aws_storage_options(conn_id)
    if parts.scheme in GCS_SCHEMES:
        return f"gs://{parts.hostname}{path}", gcp_storage_options(conn_id)
    if parts.scheme in AZURE_SCHEMES:
        return f"abfss://{parts.hostname}{path}", azure_storage_options(conn_id)
    raise LuccaConfigError(
        f"Invalid output_path={url!r} for file_format='delta': expected s3://, gs://, abfs:// "
        "or a local path."
    )


def aws_storage_options(conn_id: str | None) -> dict[str, str]:
    """Key, secret and session token (resolved by the Amazon provider: assumed roles, profiles,
    the instance's credentials), region, and the endpoint of MinIO or another S3-compatible
    store. Without a connection id, delta-rs finds credentials itself (environment, instance)."""
    if conn_id is None:
        return {}
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    credentials = hook.get_credentials()
    options = {
        "AWS_ACCESS_KEY_ID": credentials.access_key,
        "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
    }
    if credentials.token:
        options["AWS_SESSION_TOKEN"] = credentials.token
    region = hook.conn_region_name
    if region:
        options["AWS_REGION"] = region
    endpoint = hook.conn_config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


def gcp_storage_options(conn_id: str | None) -> dict[str, str]:
    """A ``google_cloud_platform`` connection's key file (``key_path``) or key JSON
    (``keyfile_dict``); without either, delta-rs uses the application default credentials."""
    if conn_id is None:
        return {}
    extra = _connection_extra(conn_id)
    key_path = _extra_field(extra, "key_path", "google_cloud_platform")
    keyfile = _extra_field(extra, "keyfile_dict", "google_cloud_platform")
    if keyfile:
        text = keyfile if isinstance(keyfile, str) else json.dumps(keyfile)
        return {"google_service_account_key": text}
    if key_path:
        return {"google_service_account": str(key_path)}
    return {}


def azure_storage_options(conn_id: str | None) -> dict[str, str]:
    """An Azure Data Lake / Blob connection: the account name (login, or ``host``) with its key
    (password), a SAS token (extra ``sas_token``), or a service principal (extra ``tenant_id``
    with login / password as client id / secret)."""
    if conn_id is None:
        return {}
    from airflow.sdk import BaseHook

    connection = BaseHook.get_connection(conn_id)
    extra = connection.extra_dejson
    account = extra.get("account_name") or connection.host or connection.login
    options: dict[str, str] = {}
    if account:
        options["azure_storage_account_name"] = str(account).split(".")[0]
    tenant = _extra_field(extra, "tenant_id", "azure_data_lake")
    sas = _extra_field(extra, "sas_token", "wasb")
    if tenant and connection.login and connection.password:
        options |= {
            "azure_tenant_id": str(tenant),
            "azure_client_id": connection.login,
            "azure_client_secret": connection.password,
        }
    elif sas:
        options["azure_storage_sas_key"] = str(sas)
    elif connection.password:
        options["azure_storage_account_key"] = connection.password
    return options


def _connection_extra(conn_id: str) -> dict[str, object]:
    from airflow.sdk import BaseHook

    extra: dict[str, object] = BaseHook.get_connection(conn_id).extra_dejson
    return extra


def _extra_field(extra: dict[str, object], name: str, conn_type: str) -> object:
    """An extra under its name, or under the ``extra__<type>__<name>`` key older forms saved."""
    return extra.get(name) or extra.get(f"extra__{conn_type}__{name}")
