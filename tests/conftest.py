"""Shared fixtures: an isolated AIRFLOW_HOME, the Lucca sandbox, a moto S3 server, connections.

AIRFLOW_HOME is set before anything imports Airflow, so no test touches ~/airflow.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

_HOME = tempfile.mkdtemp(prefix="lucca-tests-airflow-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(Path(__file__).resolve().parents[1] / "dags")

import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run: CI never flakes on a new random draw, and a
# failure reproduces. HYPOTHESIS_PROFILE=explore searches afresh (locally, to look for new bugs).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

from lucca_sandbox import SandboxConfig, SandboxServer  # noqa: E402

# SANDBOX_KEY is re-exported for modules that import it from here; import from tests.helpers.
from tests.helpers import SANDBOX_KEY as SANDBOX_KEY  # noqa: E402
from tests.helpers import free_port, lucca_conn_json  # noqa: E402


@pytest.fixture
def sandbox() -> Iterator[SandboxServer]:
    """A fresh sandbox (2,000 records over 2025, exclusive bounds) on a free loopback port."""
    with SandboxServer(SandboxConfig(records=2000)) as server:
        yield server


@pytest.fixture
def lucca_conn(sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """``lucca_default`` points at the sandbox, unpaced."""
    monkeypatch.setenv("AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(sandbox.url))
    return sandbox


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[str]:
    """A real S3 API over HTTP (moto's server) on loopback, in a process of its own, as a real
    store is; yields its endpoint URL.

    Not in the tests' process: delta-rs holds the GIL through some of its requests, and a server
    thread of the same process could then never answer them.
    """
    import subprocess
    import sys
    import time
    import urllib.request

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=2).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's server did not start on {url}") from None
                time.sleep(0.1)  # polling for readiness, with a deadline
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


@pytest.fixture
def s3_bucket(moto_s3: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new bucket, reachable through the Airflow connection ``aws_local``; yields its name."""
    import uuid

    import boto3

    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_LOCAL",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "test",
                "password": "test",
                "extra": {"endpoint_url": moto_s3, "region_name": "us-east-1"},
            }
        ),
    )
    name = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's redis-server (``scripts/system_packages.sh`` installs it) on a free loopback port,
    without persistence, in its own directory; yields ``redis://127.0.0.1:<port>``."""
    import shutil
    import subprocess
    import time

    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is missing: run `bash scripts/system_packages.sh`")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1"),
            *("--save", "", "--appendonly", "no", "--dir", str(workdir)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)  # polling for readiness, with a deadline
        yield f"redis://127.0.0.1:{port}"
    finally:
        client.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


#: The dags/ modules that read the settings when imported (the DAG files import them by name).
SETTINGS_MODULES = ("lucca_common", "lucca_verify", "lucca_training_hours_report", "lucca_fleet")
DAGS = Path(__file__).resolve().parents[1] / "dags"


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """``settings(LUCCA_FILE_FORMAT="delta", ...)``: the DAG modules imported next read these
    environment variables (and only these LUCCA_* ones); the defaults come back afterwards."""
    sys.path.insert(0, str(DAGS))

    def apply(**env: str) -> None:
        for name in [name for name in os.environ if name.startswith("LUCCA_")]:
            monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        for module in SETTINGS_MODULES:
            sys.modules.pop(module, None)

    yield apply
    monkeypatch.undo()
    for module in SETTINGS_MODULES:
        sys.modules.pop(module, None)
    sys.path.remove(str(DAGS))
