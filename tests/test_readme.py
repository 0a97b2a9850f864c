"""The README's reading snippet works on what the operator writes."""

from __future__ import annotations

import gzip
import json
import re
from datetime import date
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY, moto_client

README = Path(__file__).resolve().parents[1] / "README.md"
DEMO_ROOT = 'root = "data/demo/lake/lucca/realized_trainings"'


def duckdb_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (snippet,) = [
        block
        for block in blocks
        if "duckdb.sql" in block and "_manifest.json" in block and "s3fs" not in block
    ]
    assert DEMO_ROOT in snippet
    return snippet


def test_duckdb_snippet_reads_exact_hours_through_manifests(
    sandbox: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = LuccaClient(
        ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    )
    window = DateWindow(date(2025, 3, 1), date(2025, 4, 1))
    output = ObjectStoragePath(tmp_path.as_uri())
    extract_realized_trainings(client, ExtractionRequest(window=window), output, log=client.log)
    # An orphan part of a crashed run: a reader that globs part files would count it.
    orphan = tmp_path / "session_end_on=2025-03-05" / "part-00000-orphan.jsonl.gz"
    ghost = {"id": 1, "ownerId": 999999, "sessionEndsOn": "2025-03-05", "hasAttended": True}
    orphan.write_bytes(gzip.compress(json.dumps({**ghost, "durationInHours": 10000}).encode()))

    exec(duckdb_snippet().replace(DEMO_ROOT, f"root = {str(tmp_path)!r}"), {})

    printed = capsys.readouterr().out
    hours: dict[int, str] = {}
    for record in sandbox.records:
        if "2025-03-01" <= record["sessionEndsOn"] < "2025-04-01" and record["hasAttended"]:
            owner = record["ownerId"]
            hours[owner] = str(sum_decimal(hours.get(owner, "0"), record["durationInHours"]))
    top = sorted(hours.items(), key=lambda item: float(item[1]), reverse=True)[0]
    assert "attended_hours" in printed
    assert "999999" not in printed
    assert re.search(rf"\b{top[0]}\b.*\b{re.escape(top[1])}\b", printed), printed


def sum_decimal(total: str, value: float) -> object:
    from decimal import Decimal

    return Decimal(total) + Decimal(repr(value))


S3_FS = "fs = s3fs.S3FileSystem()"
S3_ROOT = 'root = "lake/lucca/realized_trainings"'


def s3_duckdb_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (snippet,) = [block for block in blocks if "duckdb.register_filesystem" in block]
    assert S3_FS in snippet
    assert S3_ROOT in snippet
    return snippet


@pytest.mark.slow
def test_s3_duckdb_snippet_counts_exactly_what_the_manifests_list(
    sandbox: SandboxServer, moto_s3: str, s3_bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = LuccaClient(
        ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    )
    window = DateWindow(date(2025, 2, 20), date(2025, 3, 10))
    prefix = "lake/lucca/realized_trainings"
    output = ObjectStoragePath(f"s3://aws_local@{s3_bucket}/{prefix}")
    extract_realized_trainings(client, ExtractionRequest(window=window), output, log=client.log)
    # An orphan part of a crashed run, which a glob over part files would count.
    s3 = moto_client(moto_s3)
    orphan = {"id": 1, "ownerId": 9, "sessionEndsOn": "2025-03-05", "hasAttended": True}
    s3.put_object(
        Bucket=s3_bucket,
        Key=f"{prefix}/session_end_on=2025-03-05/part-00000-orphan.jsonl.gz",
        Body=gzip.compress((json.dumps(orphan) + "\n").encode() * 500),
    )

    fs = (
        "fs = s3fs.S3FileSystem(key='test', secret='test', "
        f"client_kwargs={{'endpoint_url': {moto_s3!r}, 'region_name': 'us-east-1'}})"
    )
    snippet = s3_duckdb_snippet().replace(S3_FS, fs)
    exec(snippet.replace(S3_ROOT, f"root = {s3_bucket + '/' + prefix!r}"), {})

    printed = capsys.readouterr().out
    months = {"2025-02": 0, "2025-03": 0}
    for record in sandbox.records:
        if window.start.isoformat() <= record["sessionEndsOn"] < window.end.isoformat():
            months[record["sessionEndsOn"][:7]] += 1
    for month, count in months.items():
        assert re.search(rf"{month}-01\D.*\b{count}\b", printed), printed
