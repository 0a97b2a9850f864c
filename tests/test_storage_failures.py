"""A store that fails mid-commit, on S3 (moto behind a fault-injecting proxy) and local disk.

What a user must be able to rely on: a typed error naming the phase and the days left on this
run's manifests; the window all-or-nothing for readers that follow manifests whenever the store
lets the previous manifests be put back; no part file of the failed run left for readers that list
files; and a sweep for what a killed run leaves.
"""

from __future__ import annotations

import errno
import gzip
import json
import logging
import os
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_lucca.client import ClientConfig, LuccaClient
from airflow_provider_lucca.extraction.commit import read_manifest
from airflow_provider_lucca.extraction.errors import LuccaStorageError
from airflow_provider_lucca.extraction.lock import LockPolicy
from airflow_provider_lucca.extraction.reader import read_partition
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sweep import sweep_unlisted
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY
from tests.s3_fault_proxy import S3FaultProxy

LOG = logging.getLogger("tests.storage_failures")
START, UNTIL = "2025-03-01", "2025-03-08"
PREFIX = "lucca/realized_trainings"


def days(start: str = START, until: str = UNTIL) -> list[str]:
    first = date.fromisoformat(start)
    return [
        (first + timedelta(n)).isoformat() for n in range((date.fromisoformat(until) - first).days)
    ]


def truth(sandbox: SandboxServer) -> dict[str, list[object]]:
    result: dict[str, list[object]] = {day: [] for day in days()}
    for record in sandbox.records:
        if record["sessionEndsOn"] in result:
            result[record["sessionEndsOn"]].append(record["id"])
    return {day: sorted(ids) for day, ids in result.items()}


def extract(sandbox: SandboxServer, base: Any) -> dict[str, Any]:
    config = ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    request = ExtractionRequest(
        window=DateWindow(date.fromisoformat(START), date.fromisoformat(UNTIL))
    )
    # A store that refuses every write also refuses to delete the lock: a short lease lets the
    # next run take it over within seconds.
    policy = LockPolicy(timeout=60, lease=5, poll=0.1)
    with LuccaClient(config) as client:
        return extract_realized_trainings(client, request, base, log=LOG, lock_policy=policy)


def manifest_view(base: Any) -> dict[str, list[object]]:
    """Ids per day for a reader that follows manifests (sizes and checksums checked)."""
    base.fs.invalidate_cache()
    return {
        day: sorted(record["id"] for record in read_partition(base, date.fromisoformat(day)))
        for day in days()
        if read_manifest(base, date.fromisoformat(day)) is not None
    }


def change_every_day(sandbox: SandboxServer) -> None:
    """Late arrivals on every day, and a record moved from the first day to the last."""
    first = next(r for r in sandbox.records if r["sessionEndsOn"] == days()[0])
    sandbox.configure(
        add_records=[
            {**sandbox.records[0], "id": 9_000_000 + n, "sessionEndsOn": day}
            for n, day in enumerate(days())
        ]
        + [{**first, "sessionEndsOn": days()[-1]}]
    )


# --------------------------------------------------------------------------- S3 through the proxy


@pytest.fixture
def faulty_s3(
    moto_s3: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[S3FaultProxy, Any, Any]]:
    """(proxy, dataset root through the proxy, boto3 client straight to moto for listing)."""
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    with S3FaultProxy(moto_s3) as proxy:
        conn_id = f"aws_faulty_{uuid.uuid4().hex[:6]}"
        monkeypatch.setenv(
            f"AIRFLOW_CONN_{conn_id.upper()}",
            json.dumps(
                {
                    "conn_type": "aws",
                    "login": "test",
                    "password": "test",
                    "extra": {"endpoint_url": proxy.url, "region_name": "us-east-1"},
                }
            ),
        )
        yield proxy, ObjectStoragePath(f"s3://{conn_id}@{bucket}/{PREFIX}"), (s3, bucket)


def listing_view(listing: tuple[Any, str]) -> list[object]:
    """Every record in every part file under the prefix: what Athena or a DuckDB glob reads."""
    s3, bucket = listing
    ids: list[object] = []
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX)
    for page in pages:
        for item in page.get("Contents", []):
            if item["Key"].endswith(".jsonl.gz"):
                data = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
                ids += [json.loads(line)["id"] for line in gzip.decompress(data).splitlines()]
    return sorted(ids)


def fail_from_manifest(number: int, *, only_that_one: bool) -> Any:
    """A rule: deny the ``number``-th manifest PUT, and every write after it unless
    ``only_that_one``."""
    state = {"manifests": 0, "failing": False}

    def rule(method: str, path: str) -> str | None:
        if method == "PUT" and path.split("?")[0].endswith("/_manifest.json"):
            state["manifests"] += 1
            if state["manifests"] == number:
                state["failing"] = not only_that_one
                return "deny"
        if state["failing"] and method in ("PUT", "POST", "DELETE"):
            return "deny"
        return None

    return rule


@pytest.mark.slow
def test_a_manifest_put_failing_once_puts_the_window_back_as_it_was(
    sandbox: SandboxServer, faulty_s3: tuple[S3FaultProxy, Any, Any]
) -> None:
    proxy, base, listing = faulty_s3
    extract(sandbox, base)
    before_manifests, before_listing = manifest_view(base), listing_view(listing)
    assert before_manifests == truth(sandbox)
    change_every_day(sandbox)

    proxy.rule = fail_from_manifest(3, only_that_one=True)
    with pytest.raises(LuccaStorageError) as info:
        extract(sandbox, base)

    error = info.value
    assert error.phase == "manifests"
    assert error.committed_days == ()
    assert "AccessDenied" in str(error) or "Access Denied" in str(error)
    assert "every day it had replaced was put back on its previous manifest" in str(error)
    assert "uploaded part files were removed" in str(error)
    # All-or-nothing for manifest readers, and no extra rows for readers that list files.
    assert manifest_view(base) == before_manifests
    assert listing_view(listing) == before_listing

    proxy.rule = lambda method, path: None
    extract(sandbox, base)
    assert manifest_view(base) == truth(sandbox)
    assert listing_view(listing) == sorted(i for ids in truth(sandbox).values() for i in ids)


@pytest.mark.slow
def test_a_store_that_goes_away_mid_manifests_says_which_days_are_new(
    sandbox: SandboxServer, faulty_s3: tuple[S3FaultProxy, Any, Any]
) -> None:
    proxy, base, listing = faulty_s3
    extract(sandbox, base)
    old = manifest_view(base)
    change_every_day(sandbox)
    new = truth(sandbox)

    proxy.rule = fail_from_manifest(3, only_that_one=False)
    with pytest.raises(LuccaStorageError) as info:
        extract(sandbox, base)

    error = info.value
    first_two = tuple(date.fromisoformat(day) for day in days()[:2])
    assert error.phase == "manifests"
    assert error.committed_days == first_two
    assert f"2 days are on this run's manifests ({first_two[0]}, {first_two[1]})" in str(error)
    assert "restoring the previous manifests failed for 2 days" in str(error)
    seen = manifest_view(base)
    assert seen == {**old, **{day: new[day] for day in days()[:2]}}

    proxy.rule = lambda method, path: None
    extract(sandbox, base)
    assert manifest_view(base) == new
    assert listing_view(listing) == sorted(i for ids in new.values() for i in ids)


@pytest.mark.slow
def test_a_failing_part_upload_changes_no_day_and_leaves_no_part(
    sandbox: SandboxServer, faulty_s3: tuple[S3FaultProxy, Any, Any]
) -> None:
    proxy, base, listing = faulty_s3
    extract(sandbox, base)
    old_manifests, old_listing = manifest_view(base), listing_view(listing)
    change_every_day(sandbox)
    puts = {"parts": 0}

    def rule(method: str, path: str) -> str | None:
        if method == "PUT" and ".jsonl.gz" in path:
            puts["parts"] += 1
            return "deny" if puts["parts"] == 4 else None
        return None

    proxy.rule = rule
    with pytest.raises(LuccaStorageError, match="while writing parts") as info:
        extract(sandbox, base)
    assert info.value.phase == "parts"
    assert "no day changed" in str(info.value)
    assert "its 4 uploaded part files were removed" in str(info.value)
    assert manifest_view(base) == old_manifests
    assert listing_view(listing) == old_listing


@pytest.mark.slow
def test_a_failing_cleanup_keeps_the_window_committed_and_the_sweep_removes_the_rest(
    sandbox: SandboxServer, faulty_s3: tuple[S3FaultProxy, Any, Any]
) -> None:
    proxy, base, listing = faulty_s3
    extract(sandbox, base)
    change_every_day(sandbox)
    new = truth(sandbox)
    proxy.rule = lambda method, path: (
        "deny" if method in ("DELETE", "POST") and "_lock" not in path else None
    )

    with pytest.raises(LuccaStorageError, match="while writing cleanup") as info:
        extract(sandbox, base)
    assert info.value.phase == "cleanup"
    assert info.value.committed_days == tuple(date.fromisoformat(day) for day in days())
    assert "the whole window is committed" in str(info.value)
    assert manifest_view(base) == new
    listed = sorted(i for ids in new.values() for i in ids)
    assert listing_view(listing) != listed  # the previous run's parts are still there

    proxy.rule = lambda method, path: None
    result = sweep_unlisted(base, older_than_seconds=0, log=LOG)
    assert len(result.removed) == len(days())
    assert listing_view(listing) == listed
    assert manifest_view(base) == new


# --------------------------------------------------------------------------- local disk


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 192 KiB filesystem (tmpfs) for the spool: writes past it fail with ENOSPC."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_spool_disk_names_the_directory_and_tmpdir_and_commits_nothing(
    sandbox: SandboxServer, tmp_path: Path, tiny_disk: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = ObjectStoragePath(f"file://{tmp_path / 'lake'}")
    extract(sandbox, base)
    before = manifest_view(base)
    with open(tiny_disk / "filler", "wb") as handle:  # what other tasks left on the disk
        handle.write(b"x" * 150 * 1024)
    monkeypatch.setattr(tempfile, "tempdir", str(tiny_disk))
    monkeypatch.setenv("TMPDIR", str(tiny_disk))
    sandbox.configure(records=20_000)  # about 6 MB of spool for the window

    with pytest.raises(LuccaStorageError) as info:
        extract(sandbox, base)
    assert info.value.phase == "spool"
    message = str(info.value)
    assert f"The local spool in {tiny_disk} is full" in message
    assert f"TMPDIR (now {tiny_disk})" in message
    assert "nothing was committed" in message
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert manifest_view(base) == before
    assert sorted(os.listdir(tiny_disk)) == ["filler"]  # its scratch directory is gone


def test_the_sweep_removes_only_old_unlisted_files(sandbox: SandboxServer, tmp_path: Path) -> None:
    root = tmp_path / "lake"
    base = ObjectStoragePath(f"file://{root}")
    extract(sandbox, base)
    day = root / f"session_end_on={days()[0]}"
    old, recent = day / "part-00000-deadbeef0001.jsonl.gz", day / "part-00000-deadbeef0002.jsonl.gz"
    old.write_bytes(b"orphan of a killed run")
    recent.write_bytes(b"a file being written right now")
    long_ago = os.stat(old).st_mtime - 7200
    os.utime(old, (long_ago, long_ago))
    (root / "session_end_on=not-a-date").mkdir()
    (root / "session_end_on=not-a-date" / "keep.txt").write_bytes(b"not ours")

    result = sweep_unlisted(base, older_than_seconds=3600, log=LOG)

    assert result.removed == [f"{day.name}/{old.name}"]
    assert result.kept_recent == 1
    assert recent.exists()
    assert not old.exists()
    assert (root / "session_end_on=not-a-date" / "keep.txt").exists()
    assert manifest_view(base) == truth(sandbox)
