"""Metrics through Airflow's StatsD, received by a fake StatsD server on loopback.

The receiver is a UDP socket on a free port: Airflow's StatsD client (the ``statsd`` package,
Airflow's ``statsd`` extra) sends each metric as a datagram the moment it is emitted, so once the
sender is done, every datagram is already in the socket's buffer and is read without waiting.
Counts are compared with the sandbox's request log (what the server saw) and with the run's
summary; names carry the account as ``lucca.<account>.``, never the key.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from airflow_provider_lucca.client import NO_METRICS
from airflow_provider_lucca.hooks.lucca import LuccaHook
from airflow_provider_lucca.hooks.stats import AirflowMetrics, run_counts
from lucca_sandbox import FaultSchedule, SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, lucca_conn_json, read_dataset

ROOT = Path(__file__).resolve().parents[1]

needs_statsd = pytest.mark.skipif(
    importlib.util.find_spec("statsd") is None,
    reason="Airflow's StatsD metrics need the statsd package (apache-airflow[statsd])",
)

#: A one-task DAG: the operator as a user schedules it, over the first quarter of 2025.
DAG_FILE = """
import os

import pendulum
from airflow.sdk import DAG

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator

with DAG("lucca_metrics", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")) as dag:
    RealizedTrainingsOperator(
        task_id="extract",
        output_path=os.environ["LUCCA_OUTPUT_PATH"],
        session_end_from="2025-01-01",
        session_end_until="2025-04-01",
    )
"""


@dataclass
class Received:
    """What a StatsD server received: counter totals and timer samples (ms), by name."""

    counters: Counter[str] = field(default_factory=Counter)
    timers: defaultdict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    raw: list[str] = field(default_factory=list)

    def under(self, prefix: str) -> Received:
        """The metrics whose name starts with ``prefix``, named without it."""
        scoped = Received()
        for name, count in self.counters.items():
            if name.startswith(prefix):
                scoped.counters[name.removeprefix(prefix)] = count
        for name, samples in self.timers.items():
            if name.startswith(prefix):
                scoped.timers[name.removeprefix(prefix)] = samples
        return scoped


class StatsdReceiver:
    """A fake StatsD server: a UDP socket on a free loopback port."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def received(self) -> Received:
        """Everything sent so far (``name:value|c`` and ``name:value|ms`` lines)."""
        result = Received()
        while True:
            try:
                datagram = self.sock.recv(65535)
            except BlockingIOError:
                return result
            for line in datagram.decode().split("\n"):
                result.raw.append(line)
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                if kind.startswith("c"):
                    result.counters[name] += int(value)
                elif kind.startswith("ms"):
                    result.timers[name].append(float(value))

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def statsd_server() -> Iterator[StatsdReceiver]:
    receiver = StatsdReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


# -- a real task run --------------------------------------------------------------------------


@pytest.mark.slow
@needs_statsd
def test_a_task_run_sends_the_accounts_requests_429s_retries_and_records_to_statsd(
    tmp_path: Path, statsd_server: StatsdReceiver
) -> None:
    faults = FaultSchedule(at={2: "429", 4: "503", 5: "429"})
    sandbox = SandboxServer(SandboxConfig(records=2000, faults=faults)).start()
    port = sandbox.port
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "lucca_metrics_dag.py").write_text(DAG_FILE)
    output = tmp_path / "lake"
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd_server.port),
        # paced at 4 requests a second, slower than a page is handled: the requests that do not
        # follow a retry wait for their slot
        "AIRFLOW_CONN_LUCCA_DEFAULT": lucca_conn_json(
            sandbox.url, requests_per_minute=240, page_size=100
        ),
        "LUCCA_OUTPUT_PATH": output.as_uri(),
        "METRICS_DAG_MODULE": "lucca_metrics_dag",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    try:
        child = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "metrics_child.py")],
            env=env,
            capture_output=True,
            timeout=180,
            check=False,
        )
        log = sandbox.request_log()["requests"]
    finally:
        sandbox.stop()
    logs = child.stdout.decode("utf-8", "replace") + child.stderr.decode("utf-8", "replace")
    lines = [line for line in logs.splitlines() if line.startswith("LUCCA-METRICS-RESULT ")]
    assert child.returncode == 0, logs[-5000:]
    assert lines, logs[-5000:]
    result = json.loads(lines[-1].removeprefix("LUCCA-METRICS-RESULT "))
    assert result["state"] == "success", logs[-5000:]
    summary = result["xcom"]["extract"]

    received = statsd_server.received()
    account = f"127_0_0_1_{port}"
    lucca_names = [line.partition(":")[0] for line in received.raw if ".lucca." in line]
    assert lucca_names
    # Plain StatsD has no tags: the account is the name's second segment ("airflow." is
    # Airflow's statsd_prefix).
    assert all(re.fullmatch(rf"airflow\.lucca\.{account}\.[a-z_]+", name) for name in lucca_names)
    assert not any(SANDBOX_KEY in line for line in received.raw)
    ours = received.under(f"airflow.lucca.{account}.")

    statuses = [entry["status"] for entry in log]
    assert statuses.count(429) == 2
    assert statuses.count(503) == 1
    committed = read_dataset(output)
    assert ours.counters == {
        "requests": len(statuses),
        "rate_limited": 2,
        "server_errors": 1,
        "retries": 3,
        "records_written": sum(len(rows) for rows in committed.values()),
        "days_written": 90,  # January to March
        "reads": summary["reads"],
    }
    assert summary["records"] == ours.counters["records_written"] > 0
    assert summary["requests"] == len(statuses)
    assert len(summary["partitions"]) == 90
    # Retry waits in ms: the two 429s' Retry-After of 1 s, the 503's jittered backoff (0.5-1 s).
    waits = sorted(ours.timers["retry_wait"])
    assert len(waits) == 3
    assert 500 <= waits[0] <= 1000
    assert waits[1:] == [1000.0, 1000.0]
    paced = ours.timers["pacing_wait"]
    assert paced
    assert all(0 < wait <= 60_000 / 240 * 1.01 + 1 for wait in paced)  # ms, at most a slot
    assert set(ours.timers) == {"retry_wait", "pacing_wait"}
    assert any(line.endswith("|ms") for line in received.raw if ".lucca." in line)


# -- the hook's metrics, in this process -------------------------------------------------------


def broken_stat_name_handler(name: str) -> str:
    """A ``[metrics] stat_name_handler`` that fails on every name (a deployment's bug)."""
    raise RuntimeError(f"cannot name {name}")


@pytest.fixture
def airflow_statsd(
    statsd_server: StatsdReceiver, monkeypatch: pytest.MonkeyPatch
) -> Iterator[StatsdReceiver]:
    """Airflow's StatsD metrics on, in this process, initialised as the task runner does."""
    from airflow.sdk._shared.observability.metrics.base_stats_logger import NoStatsLogger
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "True")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_HOST", "127.0.0.1")
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_PORT", str(statsd_server.port))
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
    try:
        yield statsd_server
    finally:
        stats.initialize(factory=NoStatsLogger, export_legacy_names=True)


def test_metrics_off_cost_one_empty_call(lucca_conn: SandboxServer) -> None:
    hook = LuccaHook()
    assert hook.metrics is NO_METRICS
    assert hook.client.metrics is NO_METRICS


@pytest.mark.slow  # a retry's backoff
@needs_statsd
def test_the_hooks_client_counts_under_the_account_of_its_connection(
    monkeypatch: pytest.MonkeyPatch, airflow_statsd: StatsdReceiver
) -> None:
    with SandboxServer(SandboxConfig(records=300, faults=FaultSchedule(at={1: "504"}))) as server:
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_DEFAULT", lucca_conn_json(server.url, max_retries=1))
        hook = LuccaHook()
        pages = list(hook.iter_realized_trainings())
        hook.close()
        statuses = [entry["status"] for entry in server.request_log()["requests"]]
        account = f"127_0_0_1_{server.port}"
    assert isinstance(hook.metrics, AirflowMetrics)
    assert hook.metrics.account == account
    ours = airflow_statsd.received().under(f"airflow.lucca.{account}.")
    assert sum(len(page.items) for page in pages) == 300
    assert statuses == [504, 200, 200, 200]
    assert ours.counters == {"requests": 4, "server_errors": 1, "retries": 1}
    [wait] = ours.timers["retry_wait"]
    assert 500 <= wait <= 1000  # ms: the default backoff of 1 s, jittered by up to half


@pytest.mark.slow  # 20 pages
@needs_statsd
def test_a_failing_metrics_backend_never_fails_the_extraction(
    monkeypatch: pytest.MonkeyPatch,
    airflow_statsd: StatsdReceiver,
    lucca_conn: SandboxServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    monkeypatch.setenv(
        "AIRFLOW__METRICS__STAT_NAME_HANDLER", "tests.test_metrics.broken_stat_name_handler"
    )
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=True)
    hook = LuccaHook()
    with caplog.at_level(logging.WARNING, logger="airflow_provider_lucca.hooks.stats"):
        records = sum(len(page.items) for page in hook.iter_realized_trainings())
        hook.report_run({"records": records, "partitions": {}, "reads": 1})
    assert records == 2000
    assert len(lucca_conn.request_log()["requests"]) == 20
    warnings = [r.getMessage() for r in caplog.records if "metrics are off" in r.getMessage()]
    assert len(warnings) == 1  # once, then nothing more is attempted
    assert "RuntimeError: cannot name lucca." in warnings[0]
    assert not airflow_statsd.received().raw


def test_a_reconciliation_counts_the_days_it_rewrote() -> None:
    summary = {
        "records_rewritten": 12,
        "re_extracted": [
            {"from": "2025-03-03", "until": "2025-03-05"},
            {"from": "2025-03-28", "until": "2025-04-02"},
        ],
        "changed_days": [],
    }
    assert run_counts(summary) == {"records_written": 12, "days_written": 7}
    assert run_counts({"unrelated": 1}) == {}
    assert run_counts(None) == {}
