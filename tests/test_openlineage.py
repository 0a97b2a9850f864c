"""OpenLineage: the events a real ``dag.test()`` run sends through the OpenLineage provider (file
transport) name the Lucca endpoint and the dataset or table after OpenLineage's conventions, with
the schema and the statistics of what the run committed, and never the API key; without the
provider the operator imports and runs as before."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_lucca.operators.lineage import (
    LUCCA_DATASET_NAME,
    _without_credentials,
    lucca_namespace,
    storage_dataset_name,
)
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import (
    MANIFEST,
    RECORD_FIELDS,
    SANDBOX_KEY,
    lucca_conn_json,
    moto_client,
    read_dataset,
)
from tests.test_dags import iceberg_conn_json

ROOT = Path(__file__).resolve().parents[1]
WINDOW = {"session_end_from": "2025-03-01", "session_end_until": "2025-03-15"}
AGAIN = {"session_end_from": "2025-03-05", "session_end_until": "2025-03-09"}
#: A refused key, distinctive enough to be searched for in the events.
WRONG_KEY = "wrong-key-" + uuid.uuid4().hex
JSON_FIELDS = list(RECORD_FIELDS)
TYPED_COLUMNS = [*JSON_FIELDS, "_extra"]


# -- naming, without Airflow runs


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://aws_default@lake/lucca/realized", ("s3://lake", "lucca/realized")),
        ("s3://lake/lucca/realized/tenant=acme", ("s3://lake", "lucca/realized/tenant=acme")),
        ("gs://google_cloud_default@lake/lucca", ("gs://lake", "lucca")),
        ("file:///data/lucca/realized", ("file", "/data/lucca/realized")),
        (
            "abfss://raw@acct.dfs.core.windows.net/lucca",
            ("abfss://raw@acct.dfs.core.windows.net", "lucca"),
        ),
    ],
)
def test_storage_locations_are_named_after_openlineage_conventions(
    url: str, expected: tuple[str, str]
) -> None:
    assert storage_dataset_name(url) == expected


def test_an_azure_container_takes_its_account_from_the_connection() -> None:
    assert storage_dataset_name("abfs://azure_conn@raw/lucca", azure_account="acct") == (
        "abfss://raw@acct.dfs.core.windows.net",
        "lucca",
    )


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://acme.ilucca.net", "https://acme.ilucca.net"),
        ("https://acme.ilucca.net:443", "https://acme.ilucca.net"),
        ("https://acme.ilucca.net:8443", "https://acme.ilucca.net:8443"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_the_lucca_namespace_is_the_account_url_without_its_default_port(
    base_url: str, expected: str
) -> None:
    assert lucca_namespace(base_url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg2://iceberg:s3cret@db.internal:5432/catalog?sslmode=require",
            "postgresql+psycopg2://db.internal:5432/catalog",
        ),
        (
            "https://user:token@catalog.example.com/api/catalog",
            "https://catalog.example.com/api/catalog",
        ),
        ("sqlite:////data/iceberg/catalog.db", "sqlite:////data/iceberg/catalog.db"),
        # Drivers accept an unencoded "/" in a password; urlsplit would end the host there.
        (
            "postgresql+psycopg2://lucca:2024/Hiver@db.internal:5432/iceberg",
            "postgresql+psycopg2://db.internal:5432/iceberg",
        ),
        ("postgresql://lucca:a@b/c@db/iceberg", "postgresql://db/iceberg"),
    ],
)
def test_catalog_urls_lose_their_credentials(url: str, expected: str) -> None:
    assert _without_credentials(url) == expected


# -- without the provider


BLOCKED_CHILD = textwrap.dedent(
    """
    import json, os, sys

    HIDDEN = ("openlineage", "airflow.providers.openlineage")

    class Block:  # as if not installed: neither its modules nor its distributions are found
        def find_spec(self, name, path=None, target=None):
            if name in HIDDEN or name.startswith(tuple(prefix + "." for prefix in HIDDEN)):
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    def without_openlineage(found):
        def find_distributions(*args, **kwargs):
            for dist in found(*args, **kwargs):
                if "openlineage" not in (dist.metadata["Name"] or "").lower():
                    yield dist

        return staticmethod(find_distributions)

    import importlib_metadata  # the backport Airflow reads entry points with adds a finder

    for finder in sys.meta_path:
        if hasattr(finder, "find_distributions"):
            owner = finder if isinstance(finder, type) else type(finder)
            owner.find_distributions = without_openlineage(finder.find_distributions)
    sys.meta_path.insert(0, Block())
    from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator

    operator = RealizedTrainingsOperator(
        task_id="extract", output_path=os.environ["OUT"], outlets=[],
        session_end_from="2025-03-01", session_end_until="2025-03-08",
    )
    summary = operator.execute({"run_id": "manual__no_openlineage"})
    loaded = sorted(name for name in sys.modules if "openlineage" in name)
    print("RESULT " + json.dumps({"records": summary["records"], "loaded": loaded}))
    """
)


@pytest.mark.slow
def test_without_the_provider_the_operator_imports_and_extracts_as_before(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    env = child_env(tmp_path) | {
        "AIRFLOW_CONN_LUCCA_DEFAULT": lucca_conn_json(sandbox.url),
        "OUT": (tmp_path / "lake").as_uri(),
    }
    child = subprocess.run(
        [sys.executable, "-c", BLOCKED_CHILD],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    output = child.stdout.decode() + child.stderr.decode()
    assert child.returncode == 0, output[-3000:]
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["loaded"] == []
    days = read_dataset(tmp_path / "lake")
    assert result["records"] == sum(map(len, days.values())) > 0


# -- real dag.test() runs with the provider and a file transport


def child_env(tmp_path: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    return env | {
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "PYTHONPATH": str(ROOT),
    }


class Runs:
    """What the child's runs committed and the events they sent."""

    def __init__(self, root: Path, lucca_url: str, bucket: str, endpoint: str, result: Any) -> None:
        self.root = root
        self.lucca_url = lucca_url
        self.bucket = bucket
        self.endpoint = endpoint
        self.result = result
        self.text = (root / "ol.json").read_text()
        self.events = [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def event(self, dag_id: str, event_type: str) -> dict[str, Any]:
        found = [
            event
            for event in self.events
            if event["job"]["name"] == f"{dag_id}.lucca" and event["eventType"] == event_type
        ]
        assert len(found) == 1, (dag_id, event_type, [e["job"]["name"] for e in self.events])
        return found[0]

    def summary(self, dag_id: str) -> dict[str, Any]:
        assert self.result[dag_id]["state"] == "success", self.result[dag_id]
        summary: dict[str, Any] = self.result[dag_id]["summary"]
        return summary


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, moto_s3: str) -> Runs:
    """One child running every scenario's DAG: files on local disk, Parquet files of a tenant on
    moto S3, a Delta table, an Iceberg table, a refused key, and a reconciliation after a change
    of Lucca's data."""
    root = tmp_path_factory.mktemp("openlineage")
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    moto_client(moto_s3).create_bucket(Bucket=bucket)
    with SandboxServer(SandboxConfig(records=2000)) as sandbox:
        plan: list[dict[str, Any]] = [
            run("ol_files", output_path=(root / "files").as_uri()),
            run(
                "ol_s3",
                output_path=f"s3://aws_local@{bucket}/lake/lucca",
                file_format="parquet",
                tenant="acme",
            ),
            run("ol_delta", output_path=str(root / "delta"), file_format="delta"),
            run(
                "ol_iceberg",
                iceberg_table="lucca.realized_trainings",
                iceberg_conn_id="iceberg_local",
                file_format="iceberg",
            ),
            # Second runs over part of the window: their statistics are of their own commits.
            {
                "dag_id": "ol_delta_again",
                "operator": "extract",
                "kwargs": {
                    "output_path": str(root / "delta"),
                    "file_format": "delta",
                    **AGAIN,
                },
            },
            {
                "dag_id": "ol_iceberg_again",
                "operator": "extract",
                "kwargs": {
                    "iceberg_table": "lucca.realized_trainings",
                    "iceberg_conn_id": "iceberg_local",
                    "file_format": "iceberg",
                    **AGAIN,
                },
            },
            run("ol_refused", output_path=(root / "refused").as_uri(), lucca_conn_id="lucca_wrong"),
            run("ol_before_reconcile", output_path=(root / "reconciled").as_uri()),
            {
                "mutate": {
                    "url": sandbox.url,
                    "token": sandbox.admin_token,
                    "body": {"seed": 5, "inserts": 2, "flips": 1, **span("2025-03-03", 8)},
                }
            },
            {
                "dag_id": "ol_reconcile",
                "operator": "reconcile",
                "kwargs": {"output_path": (root / "reconciled").as_uri(), **WINDOW},
            },
            {
                "dag_id": "ol_reconcile_delta",
                "operator": "reconcile",
                "kwargs": {"output_path": str(root / "delta"), "file_format": "delta", **WINDOW},
            },
        ]
        env = child_env(root) | {
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
                {"type": "file", "log_file_path": str(root / "ol.json"), "append": True}
            ),
            "AIRFLOW__OPENLINEAGE__NAMESPACE": "lucca_tests",
            "AIRFLOW__OPENLINEAGE__DISABLED": "False",
            "AIRFLOW_CONN_LUCCA_DEFAULT": lucca_conn_json(sandbox.url),
            "AIRFLOW_CONN_LUCCA_WRONG": lucca_conn_json(sandbox.url, WRONG_KEY),
            "AIRFLOW_CONN_AWS_LOCAL": json.dumps(
                {
                    "conn_type": "aws",
                    "login": "test",
                    "password": "test",
                    "extra": {"endpoint_url": moto_s3, "region_name": "us-east-1"},
                }
            ),
            "AIRFLOW_CONN_ICEBERG_LOCAL": iceberg_conn_json(root / "iceberg"),
            "LUCCA_OL_RUNS": json.dumps(plan),
        }
        (root / "dags").mkdir()
        child_file = root / "dags" / "lucca_openlineage_runs.py"
        shutil.copyfile(ROOT / "tests" / "openlineage_child.py", child_file)
        child = subprocess.run(
            [sys.executable, str(child_file)],
            env=env,
            capture_output=True,
            timeout=280,
            check=False,
        )
        lucca_url = sandbox.url
    logs = child.stdout.decode("utf-8", "replace") + child.stderr.decode("utf-8", "replace")
    (root / "child.log").write_text(logs)
    lines = [line for line in logs.splitlines() if line.startswith("LUCCA-OL-RESULT ")]
    assert child.returncode == 0, logs[-5000:]
    assert lines, logs[-5000:]
    return Runs(root, lucca_url, bucket, moto_s3, json.loads(lines[-1].split(" ", 1)[1]))


def run(dag_id: str, **kwargs: Any) -> dict[str, Any]:
    return {"dag_id": dag_id, "operator": "extract", "kwargs": {**WINDOW, **kwargs}}


def span(first: str, days: int) -> dict[str, str]:
    from datetime import date, timedelta

    start = date.fromisoformat(first)
    return {"from": first, "until": (start + timedelta(days=days)).isoformat()}


def dataset(datasets: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(datasets) == 1, datasets
    return datasets[0]


def field_names(facet: dict[str, Any]) -> list[str]:
    return [field["name"] for field in facet["fields"]]


def statistics(event: dict[str, Any]) -> dict[str, Any]:
    facet = dataset(event["outputs"])["outputFacets"]["outputStatistics"]
    return {key: facet.get(key) for key in ("rowCount", "size", "fileCount")}


def check_input(runs: Runs, event: dict[str, Any]) -> None:
    lucca = dataset(event["inputs"])
    assert (lucca["namespace"], lucca["name"]) == (runs.lucca_url, LUCCA_DATASET_NAME)
    assert lucca["name"] == "talent-training/api/v2/realized-trainings"
    assert field_names(lucca["facets"]["schema"]) == JSON_FIELDS


def local_parts(root: Path, suffix: str) -> list[Path]:
    return [path for path in root.rglob(f"*{suffix}") if path.is_file()]


@pytest.mark.slow
def test_files_on_local_disk(runs: Runs) -> None:
    root = runs.root / "files"
    start, complete = runs.event("ol_files", "START"), runs.event("ol_files", "COMPLETE")
    for event in (start, complete):
        check_input(runs, event)
        output = dataset(event["outputs"])
        assert (output["namespace"], output["name"]) == ("file", str(root))
        assert field_names(output["facets"]["schema"]) == JSON_FIELDS
    assert "outputStatistics" not in dataset(start["outputs"]).get("outputFacets", {})
    summary = runs.summary("ol_files")
    parts = local_parts(root, ".jsonl.gz")
    assert statistics(complete) == {
        "rowCount": summary["records"],
        "size": sum(path.stat().st_size for path in parts),
        "fileCount": len(parts),
    }
    assert summary["records"] == sum(map(len, read_dataset(root).values())) > 0
    parameters = {
        item["key"]: item["value"] for item in complete["run"]["facets"]["lucca_run"]["parameters"]
    }
    assert parameters["lucca.run_token"] == summary["run_token"]
    assert json.loads(parameters["lucca.records"]) == summary["records"]


@pytest.mark.slow
def test_parquet_files_of_a_tenant_on_s3(runs: Runs) -> None:
    import boto3

    complete = runs.event("ol_s3", "COMPLETE")
    check_input(runs, complete)
    output = dataset(complete["outputs"])
    # The connection id (aws_local@) is not part of the name; the tenant's directory is.
    assert (output["namespace"], output["name"]) == (
        f"s3://{runs.bucket}",
        "lake/lucca/tenant=acme",
    )
    assert field_names(output["facets"]["schema"]) == TYPED_COLUMNS
    s3 = boto3.client(
        "s3",
        endpoint_url=runs.endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    objects = s3.list_objects_v2(Bucket=runs.bucket, Prefix="lake/lucca/tenant=acme/")["Contents"]
    parts = [item for item in objects if item["Key"].endswith(".parquet")]
    records = sum(
        json.loads(s3.get_object(Bucket=runs.bucket, Key=item["Key"])["Body"].read())[
            "record_count"
        ]
        for item in objects
        if item["Key"].endswith(MANIFEST)
    )
    summary = runs.summary("ol_s3")
    assert statistics(complete) == {
        "rowCount": summary["records"],
        "size": sum(item["Size"] for item in parts),
        "fileCount": len(parts),
    }
    assert records == summary["records"] > 0


@pytest.mark.slow
def test_a_delta_table(runs: Runs) -> None:
    from deltalake import DeltaTable

    root = runs.root / "delta"
    first, again = runs.summary("ol_delta"), runs.summary("ol_delta_again")
    assert (first["table_version"], again["table_version"]) == (0, 1)
    added = {
        0: set(DeltaTable(str(root), version=0).file_uris()),
        1: set(DeltaTable(str(root), version=1).file_uris())
        - set(DeltaTable(str(root), version=0).file_uris()),
    }
    for dag_id, summary in (("ol_delta", first), ("ol_delta_again", again)):
        complete = runs.event(dag_id, "COMPLETE")
        check_input(runs, complete)
        output = dataset(complete["outputs"])
        assert (output["namespace"], output["name"]) == ("file", str(root))
        assert field_names(output["facets"]["schema"]) == [*TYPED_COLUMNS, "session_end_on"]
        assert output["facets"]["storage"]["storageLayer"] == "delta"
        # The commit's own files: a second run's statistics are not the whole table's.
        files = added[summary["table_version"]]
        rows = sum(len(read_parquet(uri)) for uri in files)
        assert statistics(complete) == {
            "rowCount": rows,
            "size": sum(Path(uri.removeprefix("file://")).stat().st_size for uri in files),
            "fileCount": len(files),
        }
        assert rows == summary["records"] > 0


def read_parquet(uri: str) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows: list[dict[str, Any]] = pq.read_table(uri.removeprefix("file://")).to_pylist()
    return rows


@pytest.mark.slow
def test_an_iceberg_table(runs: Runs) -> None:
    warehouse = runs.root / "iceberg" / "warehouse"
    table_root = warehouse / "lucca" / "realized_trainings"  # pyiceberg's default location
    assert table_root.is_dir()
    complete = runs.event("ol_iceberg", "COMPLETE")
    check_input(runs, complete)
    output = dataset(complete["outputs"])
    # Named by its location, as OpenLineage's Spark integration names Iceberg tables; the
    # catalog's identifier is a symlink.
    assert (output["namespace"], output["name"]) == ("file", str(table_root))
    assert field_names(output["facets"]["schema"]) == [*TYPED_COLUMNS, "session_end_on"]
    symlink = dataset(output["facets"]["symlinks"]["identifiers"])
    catalog_uri = f"sqlite:///{runs.root / 'iceberg' / 'catalog.db'}"
    assert symlink == {
        "namespace": catalog_uri,
        "name": "lucca.realized_trainings",
        "type": "TABLE",
    }
    catalog = output["facets"]["catalog"]
    assert (catalog["framework"], catalog["type"], catalog["name"]) == (
        "iceberg",
        "sql",
        "iceberg_local",
    )
    assert catalog["warehouseUri"] == warehouse.as_uri()
    first, again = runs.summary("ol_iceberg"), runs.summary("ol_iceberg_again")
    for dag_id, summary in (("ol_iceberg", first), ("ol_iceberg_again", again)):
        # The snapshot's own data files: a second run's statistics are not the table's.
        files = snapshot_files(runs, summary["table_version"]) - (
            set() if dag_id == "ol_iceberg" else snapshot_files(runs, first["table_version"])
        )
        assert statistics(runs.event(dag_id, "COMPLETE")) == {
            "rowCount": sum(len(read_parquet(uri)) for uri in files),
            "size": sum(Path(uri.removeprefix("file://")).stat().st_size for uri in files),
            "fileCount": len(files),
        }
        assert summary["records"] > 0
    # The first run's START, before the table (or its namespace) existed, names it alike.
    start = dataset(runs.event("ol_iceberg", "START")["outputs"])
    assert (start["namespace"], start["name"]) == ("file", str(table_root))


@pytest.mark.slow
def test_a_refused_key_fails_with_the_datasets_and_without_statistics(runs: Runs) -> None:
    assert runs.result["ol_refused"]["state"] == "failed"
    fail = runs.event("ol_refused", "FAIL")
    check_input(runs, fail)
    output = dataset(fail["outputs"])
    assert (output["namespace"], output["name"]) == ("file", str(runs.root / "refused"))
    assert "outputStatistics" not in output.get("outputFacets", {})
    assert "401" in fail["run"]["facets"]["errorMessage"]["message"]
    assert "lucca_run" not in fail["run"]["facets"]


@pytest.mark.slow
def test_a_reconciliation_reports_what_it_rewrote(runs: Runs) -> None:
    root = runs.root / "reconciled"
    summary = runs.summary("ol_reconcile")
    assert summary["re_extracted"], summary
    complete = runs.event("ol_reconcile", "COMPLETE")
    check_input(runs, complete)
    output = dataset(complete["outputs"])
    assert (output["namespace"], output["name"]) == ("file", str(root))
    rewritten = [
        json.loads((root / f"session_end_on={day}" / MANIFEST).read_text())
        for window in summary["re_extracted"]
        for day in days_of(window)
    ]
    assert statistics(complete) == {
        "rowCount": summary["records_rewritten"],
        "size": sum(entry["bytes"] for manifest in rewritten for entry in manifest["files"]),
        "fileCount": sum(len(manifest["files"]) for manifest in rewritten),
    }
    on_disk = {path.name: path.stat().st_size for path in local_parts(root, ".jsonl.gz")}
    for manifest in rewritten:
        for entry in manifest["files"]:
            assert on_disk[entry["name"]] == entry["bytes"]
    assert summary["records_rewritten"] == sum(m["record_count"] for m in rewritten)


@pytest.mark.slow
def test_a_reconciliation_of_a_delta_table_reports_its_commits(runs: Runs) -> None:
    from deltalake import DeltaTable

    root = runs.root / "delta"
    summary = runs.summary("ol_reconcile_delta")
    assert summary["table_versions"], summary
    before = set(DeltaTable(str(root), version=min(summary["table_versions"]) - 1).file_uris())
    after = set(DeltaTable(str(root), version=max(summary["table_versions"])).file_uris())
    added = after - before  # one commit per run of changed days: all the files they added
    complete = runs.event("ol_reconcile_delta", "COMPLETE")
    check_input(runs, complete)
    output = dataset(complete["outputs"])
    assert (output["namespace"], output["name"]) == ("file", str(root))
    assert statistics(complete) == {
        "rowCount": summary["records_rewritten"],
        "size": sum(Path(uri.removeprefix("file://")).stat().st_size for uri in added),
        "fileCount": len(added),
    }
    assert summary["records_rewritten"] == sum(len(read_parquet(uri)) for uri in added)


@pytest.mark.slow
def test_no_event_holds_an_api_key(runs: Runs) -> None:
    assert len(runs.events) >= 12
    assert SANDBOX_KEY not in runs.text
    assert WRONG_KEY not in runs.text


def snapshot_files(runs: Runs, snapshot_id: int) -> set[str]:
    """The data files of an Iceberg snapshot, read with pyiceberg."""
    from pyiceberg.catalog import load_catalog

    properties = json.loads(iceberg_conn_json(runs.root / "iceberg"))["extra"]
    table = load_catalog("iceberg_local", **properties).load_table("lucca.realized_trainings")
    return {task.file.file_path for task in table.scan(snapshot_id=snapshot_id).plan_files()}


def days_of(window: dict[str, str]) -> list[str]:
    from datetime import date, timedelta

    first, until = date.fromisoformat(window["from"]), date.fromisoformat(window["until"])
    return [(first + timedelta(days=n)).isoformat() for n in range((until - first).days)]
