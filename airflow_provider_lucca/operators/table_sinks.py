"""Table sinks built from operator parameters: the Airflow connection in a Delta table's URL
becomes delta-rs storage options, as ``ObjectStoragePath`` resolves it for the files formats.

The options hold credentials: they go to delta-rs only, never into a log, an XCom or an error.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow_provider_lucca.client.errors import LuccaConfigError

if TYPE_CHECKING:
    from airflow_provider_lucca.extraction.sinks.delta import DeltaSink
    from airflow_provider_lucca.extraction.sinks.iceberg import IcebergSink

DEFAULT_ICEBERG_CONN_ID = "iceberg_default"
#: ``namespace.table`` (namespaces may nest: ``lake.hr.realized_trainings``), plain identifiers.
_TABLE_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")

S3_SCHEMES = ("s3", "s3a")
GCS_SCHEMES = ("gs", "gcs")
AZURE_SCHEMES = ("abfs", "abfss", "az", "adl")


def delta_sink(url: str) -> DeltaSink:
    """The Delta sink of an ``output_path`` URL (already checked by ``storage_url``)."""
    from airflow_provider_lucca.extraction.sinks.delta import DeltaSink

    uri, options = delta_location(url)
    return DeltaSink(uri, options)


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


def iceberg_sink(conn_id: str, table: str) -> IcebergSink:
    """The Iceberg sink of ``table`` in the catalog that connection ``conn_id`` describes."""
    raise NotImplementedError("the Iceberg sink is being built (issue 11)")


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
