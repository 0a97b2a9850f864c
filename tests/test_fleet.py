"""Many tenants: the operator's ``tenant`` layout for files, and the example DAGs' fan-out over
the tenant list in real ``dag.test()`` runs (a failing tenant fails alone, named by the run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, ObjectStoragePath

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.reader import PartitionIntegrityError
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.sweep import RealizedTrainingsSweepOperator
from airflow_provider_lucca.operators.table_maintenance import (
    RealizedTrainingsTableMaintenanceOperator,
)
from lucca_sandbox import SandboxConfig, SandboxServer
from tests.helpers import SANDBOX_KEY, lucca_conn_json, read_dataset
from tests.test_dags import iceberg_conn_json

ROOT = Path(__file__).resolve().parents[1]
WINDOW = {"session_end_from": "2025-03-01", "session_end_until": "2025-03-15"}


def truth(sandbox: SandboxServer, first: str, until: str) -> dict[str, list[dict[str, Any]]]:
    """The sandbox's records of ``[first, until)`` by day."""
    days: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(sandbox.records, key=lambda record: record["id"]):
        if first <= record["sessionEndsOn"] < until:
            days.setdefault(record["sessionEndsOn"], []).append(record)
    return days


def extract(root: Path, **kwargs: Any) -> Any:
    operator = RealizedTrainingsOperator(
        task_id="extract", output_path=root.as_uri(), **WINDOW, **kwargs
    )
    return operator.execute({"run_id": "manual__fleet"})


def test_each_tenant_gets_its_own_dataset_under_the_output_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (
        SandboxServer(SandboxConfig(records=400, seed=1)) as alpha,
        SandboxServer(SandboxConfig(records=300, seed=2)) as beta,
    ):
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_ALPHA", lucca_conn_json(alpha.url))
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_BETA", lucca_conn_json(beta.url))
        first = extract(tmp_path, tenant="alpha", lucca_conn_id="lucca_alpha")
        second = extract(tmp_path, tenant="beta", lucca_conn_id="lucca_beta")
    assert first["tenant"] == "alpha"
    assert first["output_path"] == f"{tmp_path.as_uri()}/tenant=alpha"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tenant=alpha", "tenant=beta"]
    for sandbox, summary in ((alpha, first), (beta, second)):
        expected = truth(sandbox, "2025-03-01", "2025-03-15")
        got = read_dataset(tmp_path / f"tenant={summary['tenant']}")
        assert {day: rows for day, rows in got.items() if rows} == expected


def test_tenants_and_a_single_account_never_share_an_output_path(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    single, tenants = tmp_path / "single", tmp_path / "tenants"
    extract(single)
    extract(tenants, tenant="alpha")
    with pytest.raises(LuccaConfigError, match=r"single-account dataset.*path of their own"):
        extract(single, tenant="alpha")
    with pytest.raises(LuccaConfigError, match=r"holds tenants' datasets.*set tenant"):
        extract(tenants)
    requests = lucca_conn.stats()["requests"]
    assert requests == 2  # the refused runs sent nothing


def test_the_sweep_of_a_tenants_root_sweeps_each_tenant(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    for tenant in ("alpha", "beta"):
        extract(tmp_path, tenant=tenant)
        stray = tmp_path / f"tenant={tenant}" / "session_end_on=2025-03-02" / "part-killed.jsonl.gz"
        stray.write_bytes(b"left by a killed run")
    sweep = RealizedTrainingsSweepOperator(
        task_id="sweep", output_path=tmp_path.as_uri(), older_than_hours=0
    )
    summary = sweep.execute({})
    assert summary["removed"] == 2
    assert not list(tmp_path.rglob("part-killed.jsonl.gz"))
    assert summary["partitions"] == 28


# -- the example DAGs: one mapped extract -> verify -> derive per tenant


@pytest.mark.slow
def test_the_example_dags_fan_out_over_the_tenant_list(tmp_path: Path) -> None:
    sandboxes = {
        name: SandboxServer(SandboxConfig(records=records, seed=seed)).start()
        for name, records, seed in (("alpha", 400, 1), ("beta", 300, 2), ("gamma", 200, 3))
    }
    output = tmp_path / "lake"
    tenants = [{"name": name, "conn_id": f"lucca_{name}"} for name in sandboxes]
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(tmp_path / "airflow_home"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_VAR_LUCCA_TENANTS": json.dumps(tenants),
        "LUCCA_OUTPUT_PATH": output.as_uri(),
        "PYTHONPATH": str(ROOT),
    }
    for name, sandbox in sandboxes.items():
        # gamma's key is refused: HTTP 401
        key = "wrong-key" if name == "gamma" else SANDBOX_KEY
        env[f"AIRFLOW_CONN_LUCCA_{name.upper()}"] = lucca_conn_json(sandbox.url, key)
    # After the daily and history runs: a late import and an attendance flip among alpha's March
    # days (an import and a deletion in one month would cancel out in its counts: README).
    march = {"from": "2025-03-03", "until": "2025-03-11"}
    mutation = {"seed": 5, "inserts": 1, "flips": 1, **march}
    env["FLEET_MUTATE"] = json.dumps(
        {"url": sandboxes["alpha"].url, "token": sandboxes["alpha"].admin_token, "body": mutation}
    )
    try:
        child = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "fleet_child.py")],
            env=env,
            capture_output=True,
            timeout=240,
            check=False,
        )
    finally:
        for sandbox in sandboxes.values():
            sandbox.stop()
    logs = child.stdout.decode("utf-8", "replace") + child.stderr.decode("utf-8", "replace")
    lines = [line for line in logs.splitlines() if line.startswith("LUCCA-FLEET-RESULT ")]
    assert child.returncode == 0, logs[-5000:]
    assert lines, logs[-5000:]
    result = json.loads(lines[-1].removeprefix("LUCCA-FLEET-RESULT "))

    daily = result["daily"]
    assert daily["state"] == "failed"
    # Each mapped task is labelled with its tenant (a task that never ran keeps its index).
    tenant_of = {
        index: label for task, index, _, label in daily["tasks"] if task == "tenant.extract"
    }
    assert sorted(tenant_of.values()) == ["alpha", "beta", "gamma"]
    states = {(task, tenant_of.get(index)): state for task, index, state, _ in daily["tasks"]}
    for tenant in ("alpha", "beta"):
        for task in ("tenant.extract", "tenant.verify", "tenant.derive"):
            assert states[(task, tenant)] == "success", (task, tenant)
    labels = {(task, index): label for task, index, _, label in daily["tasks"]}
    assert labels[("tenant.derive", 0)] in ("alpha", "beta")
    assert states[("tenant.extract", "gamma")] == "failed"  # HTTP 401: at once, not retried
    assert states[("tenant.verify", "gamma")] == "upstream_failed"
    assert states[("fleet_summary", None)] == "failed"
    assert "1 of 3 tenants failed: gamma" in logs
    # The committed tenants hold exactly their sandbox's records of the window and lookback.
    for name in ("alpha", "beta"):
        got = read_dataset(output / f"tenant={name}")
        # (the reconciliation below extracts beta's days after them, up to its April load)
        march = {day: rows for day, rows in got.items() if day < "2025-03-11"}
        assert {day: rows for day, rows in march.items() if rows} == truth(
            sandboxes[name], "2025-03-03", "2025-03-11"
        )
        assert len(march) == 8
    assert not (output / "tenant=gamma").exists()

    history = result["history"]
    assert history["state"] == "success"
    labels = {label for task, _, _, label in history["tasks"] if task.startswith("tenant.")}
    assert labels == {"beta"}  # the run's tenants param
    got = read_dataset(output / "tenant=beta")
    april = truth(sandboxes["beta"], "2025-04-01", "2025-05-01")
    assert {day: rows for day, rows in got.items() if day >= "2025-04"} == {
        **{f"2025-04-{day:02d}": [] for day in range(1, 31)},
        **april,
    }

    # The weekly reconciliation found alpha's changed days and rewrote only them; beta's only
    # differences are the days between its daily run and its history load, never extracted
    # (2025-03-11 .. 03-31), which it extracted; gamma has nothing committed: nothing to compare,
    # no request (its refused key is not even tried).
    reconcile = result["reconcile"]
    assert reconcile["state"] == "success"
    states = {
        label: state for task, _, state, label in reconcile["tasks"] if task == "tenant.reconcile"
    }
    assert states == {"alpha": "success", "beta": "success", "gamma": "success"}
    derived = {
        label: state for task, _, state, label in reconcile["tasks"] if task == "tenant.derive"
    }
    assert derived == {"alpha": "success", "beta": "success", "gamma": "success"}
    assert reconcile["xcom"]["gamma"]["window"] is None
    assert reconcile["xcom"]["gamma"]["requests"] == 0
    mutated = sorted({change["sessionEndsOn"] for change in result["mutation"]})
    alpha, beta = reconcile["xcom"]["alpha"], reconcile["xcom"]["beta"]
    assert [change["day"] for change in alpha["changed_days"]] == mutated
    assert sorted(day for window in alpha["re_extracted"] for day in expand(window)) == mutated
    gap = truth(sandboxes["beta"], "2025-03-11", "2025-04-01")
    assert [change["day"] for change in beta["changed_days"]] == sorted(gap)
    assert sorted(day for window in beta["re_extracted"] for day in expand(window)) == sorted(gap)
    for name, (first, until) in {
        "alpha": ("2025-03-03", "2025-03-11"),
        "beta": ("2025-03-03", "2025-05-01"),
    }.items():
        got = read_dataset(output / f"tenant={name}")
        assert {day: rows for day, rows in got.items() if rows} == truth(
            sandboxes[name], first, until
        )


def expand(window: dict[str, str]) -> list[str]:
    """The ISO days of a ``{"from", "until"}`` window."""
    first, until = date.fromisoformat(window["from"]), date.fromisoformat(window["until"])
    return [(first + timedelta(days=n)).isoformat() for n in range((until - first).days)]


# -- tables: one table for every tenant, each run replacing its tenant's rows only


#: A history load, then a daily run whose lookback overlaps it.
TABLE_RUNS = (
    {"session_end_from": "2025-05-01", "session_end_until": "2025-06-20"},
    {"session_end_from": "2025-06-20", "session_end_until": "2025-06-21", "lookback_days": 7},
)


def run_tenants(settings: Callable[..., None], file_format: str, root: Path) -> dict[str, bytes]:
    """Both tenants through the DAGs' extract (``TABLE_RUNS``), verify and derive, in
    ``file_format``; returns the reports by ``tenant/month``."""
    settings(LUCCA_FILE_FORMAT=file_format, LUCCA_OUTPUT_PATH=root.as_uri())
    import lucca_common
    import lucca_training_hours_report
    import lucca_verify

    reports = {}
    with DAG(f"fleet_{file_format}", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        for tenant in ("alpha", "beta"):
            for number, window in enumerate(TABLE_RUNS):
                operator = RealizedTrainingsOperator(
                    task_id=f"extract_{tenant}_{number}",
                    tenant=tenant,
                    lucca_conn_id=f"lucca_{tenant}",
                    **lucca_common.OUTPUT_TARGET,
                    **window,
                )
                summary = operator.execute({"run_id": f"manual__{tenant}_{number}"})
                assert summary["tenant"] == tenant
                derived = lucca_training_hours_report.derive.function(
                    lucca_verify.verify.function(summary)
                )
                assert derived["tenant"] == tenant
                for path in derived["reports"]:
                    assert f"tenant={tenant}/" in path
                    if file_format != "jsonl":  # outside the partitions a vacuum cleans
                        assert f"_reports/training_hours_by_employee_month/tenant={tenant}/" in path
                    month = path.rsplit("month=", 1)[1][:7]
                    reports[f"{tenant}/{month}"] = ObjectStoragePath(path).read_bytes()
    return reports


@pytest.mark.slow
@pytest.mark.parametrize("file_format", ["delta", "iceberg"])
def test_tenants_share_one_table_and_get_the_reports_of_files(
    settings: Callable[..., None], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, file_format: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_DEFAULT", iceberg_conn_json(tmp_path / "catalog"))
    with (
        SandboxServer(SandboxConfig(records=300, seed=1)) as alpha,
        SandboxServer(SandboxConfig(records=200, seed=2)) as beta,
    ):
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_ALPHA", lucca_conn_json(alpha.url))
        monkeypatch.setenv("AIRFLOW_CONN_LUCCA_BETA", lucca_conn_json(beta.url))
        files = run_tenants(settings, "jsonl", tmp_path / "files")
        table = run_tenants(settings, file_format, tmp_path / "table")
        import lucca_common

    assert sorted(files) == ["alpha/2025-05", "alpha/2025-06", "beta/2025-05", "beta/2025-06"]
    assert table == files
    # The weekly maintenance of the table keeps the reports (a Delta vacuum deletes what its log
    # does not list, except names starting with _ at the table's root).
    reports = sorted((tmp_path / "table").rglob("month=*.csv"))
    assert len(reports) == 4
    for report in reports:
        os.utime(report, (time.time() - 3 * 86400,) * 2)
    RealizedTrainingsTableMaintenanceOperator(
        task_id="maintain", retention_days=1, **lucca_common.OUTPUT_TARGET
    ).execute({})
    assert sorted((tmp_path / "table").rglob("month=*.csv")) == reports
    # One table holds both tenants, each row once, each tenant exactly its sandbox's records.
    rows = lucca_common.read_table(date(2025, 4, 1), date(2025, 7, 1), ["id", "tenant"])
    pairs = [(row["tenant"], row["id"]) for row in rows.to_pylist()]
    assert len(pairs) == len(set(pairs))
    for tenant, sandbox in (("alpha", alpha), ("beta", beta)):
        assert sorted(id_ for name, id_ in pairs if name == tenant) == sorted(
            record["id"]
            for record in sandbox.records
            if "2025-05-01" <= record["sessionEndsOn"] <= "2025-06-20"
        ), tenant


def test_a_derive_overtaken_by_a_commit_writes_the_report_of_the_new_data(
    settings: Callable[..., None],
    lucca_conn: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Derives run side by side: one that wrote a month from data a later run has replaced since
    computes the month again, so the report left is the new data's."""
    settings(LUCCA_OUTPUT_PATH=(tmp_path / "lake").as_uri())
    import lucca_common
    import lucca_training_hours_report as report

    with DAG("fleet_derive_race", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        first = RealizedTrainingsOperator(
            task_id="month",
            **lucca_common.OUTPUT_TARGET,
            session_end_from="2025-05-01",
            session_end_until="2025-06-01",
        ).execute({"run_id": "manual__month"})
        later = RealizedTrainingsOperator(
            task_id="attended",
            **lucca_common.OUTPUT_TARGET,
            session_end_from="2025-05-10",
            session_end_until="2025-05-20",
            has_attended=True,
        )
    base = ObjectStoragePath(first["output_path"])
    _, before = report.training_hours_report(base, date(2025, 5, 1))
    real_write = report.write_whole
    writes: list[bytes] = []

    def write_then_commit(path: Any, data: bytes) -> None:
        real_write(path, data)
        writes.append(data)
        if len(writes) == 1:  # another run commits days of the month right after this write
            later.execute({"run_id": "manual__attended"})

    monkeypatch.setattr(report, "write_whole", write_then_commit)
    derived = report.derive.function(first)
    _, after = report.training_hours_report(base, date(2025, 5, 1))
    assert after != before
    assert writes == [before, after]
    assert ObjectStoragePath(derived["reports"][0]).read_bytes() == after


@pytest.mark.parametrize("reports", [None, [], {"tenant": "alpha", "reports": []}])
def test_the_summary_names_a_failed_tenant_whatever_the_others_handed_over(
    settings: Callable[..., None], reports: Any
) -> None:
    """A group mapped over one tenant hands over its report alone, or nothing when it failed."""
    settings()
    import lucca_fleet

    targets = [{"tenant": "alpha", "lucca_conn_id": "a"}, {"tenant": "gamma", "lucca_conn_id": "g"}]
    failed = "1 of 2 tenants failed: gamma" if reports else "2 of 2 tenants failed: alpha, gamma"
    with pytest.raises(RuntimeError, match=failed):
        lucca_fleet.fleet_summary.function(targets, reports)


def test_verify_tells_a_later_commit_from_damage(
    settings: Callable[..., None],
    lucca_conn: SandboxServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """verify left the one-slot pool: a day another run re-commits while verify reads it (its
    files removed under the reader) is reported as replaced; a damaged day of ours still fails."""
    settings(LUCCA_OUTPUT_PATH=(tmp_path / "lake").as_uri())
    import lucca_common
    import lucca_verify

    with DAG("fleet_verify_race", schedule=None, start_date=pendulum.datetime(2025, 1, 1)):
        first = RealizedTrainingsOperator(
            task_id="week", **lucca_common.OUTPUT_TARGET, **WINDOW
        ).execute({"run_id": "manual__week"})
        later = RealizedTrainingsOperator(
            task_id="later",
            **lucca_common.OUTPUT_TARGET,
            session_end_from="2025-03-05",
            session_end_until="2025-03-06",
        )
    real_verify = lucca_verify.verify_partition

    def read_while_replaced(base: Any, day: date) -> int:
        if day == date(2025, 3, 5):  # the later run commits the day, removing our files
            later.execute({"run_id": "manual__later"})
            raise PartitionIntegrityError(f"{day}: a file listed in its manifest is missing")
        return real_verify(base, day)

    monkeypatch.setattr(lucca_verify, "verify_partition", read_while_replaced)
    assert lucca_verify.verify.function(first) == first

    damaged = {**first, "partitions": {"2025-03-03": first["partitions"]["2025-03-03"]}}

    def broken(base: Any, day: date) -> int:
        raise PartitionIntegrityError(f"{day}: does not match the sha256 of its manifest")

    monkeypatch.setattr(lucca_verify, "verify_partition", broken)
    with pytest.raises(PartitionIntegrityError, match="sha256"):
        lucca_verify.verify.function(damaged)
