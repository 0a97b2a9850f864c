"""Failures that retrying cannot fix fail the task at once; transient ones keep Airflow's retries.

Every ``LuccaError`` class is classified on purpose (a new one fails the walk below until it is),
and a real ``dag.test()`` run (a child with its own AIRFLOW_HOME; ``dag.test()`` honours
``retries`` and ``retry_delay``) with ``retries=2`` shows each kind on a real sandbox: a wrong key,
a broken answer and a date that renders wrong fail on their first try, a server answering 503
is tried three times.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pytest
from airflow.sdk.exceptions import AirflowFailException

import airflow_provider_lucca
from airflow_provider_lucca.client.errors import (
    LuccaAuthError,
    LuccaBudgetError,
    LuccaConfigError,
    LuccaError,
    LuccaRetriesExhaustedError,
    LuccaServerError,
)
from airflow_provider_lucca.extraction.errors import (
    LuccaDataChangedError,
    LuccaLockError,
    LuccaStorageError,
)
from airflow_provider_lucca.operators.failures import (
    ERROR_RETRYABLE,
    LuccaFailure,
    failing_at_once_when_permanent,
    is_retryable,
)
from lucca_sandbox import FaultSchedule, SandboxConfig, SandboxServer
from tests.helpers import lucca_conn_json, run_child

#: What a user of the operator sees: these fail the task at once, the others are retried.
PERMANENT = {
    "LuccaConfigError",
    "TenantListError",
    "LuccaAuthError",
    "LuccaNotFoundError",
    "LuccaRequestError",
    "LuccaRedirectError",
    "LuccaTLSError",
    "LuccaResponseError",
}
RETRYABLE = {
    "LuccaError",
    "LuccaAPIError",
    "LuccaRetriesExhaustedError",
    "LuccaRateLimitError",
    "LuccaServerError",
    "LuccaTooSlowError",
    "LuccaDataChangedError",
    "LuccaCountMismatchError",
    "LuccaNotJSONPageError",
    "LuccaBudgetError",
    "LuccaLockError",
    "LuccaStorageError",
    "PartitionIntegrityError",
}


def every_error_class() -> set[type[LuccaError]]:
    """``LuccaError`` and all its subclasses, once every module of the provider is imported."""
    for module in pkgutil.walk_packages(
        airflow_provider_lucca.__path__, airflow_provider_lucca.__name__ + "."
    ):
        importlib.import_module(module.name)
    found: set[type[LuccaError]] = set()
    pending: list[type[LuccaError]] = [LuccaError]
    while pending:
        cls = pending.pop()
        if not issubclass(cls, LuccaFailure):  # the failing-at-once twins of the permanent ones
            found.add(cls)
        pending.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_classified_on_purpose() -> None:
    classes = every_error_class()
    unclassified = sorted(cls.__name__ for cls in classes - set(ERROR_RETRYABLE))
    assert not unclassified, (
        f"classify {unclassified} in ERROR_RETRYABLE (operators/failures.py): "
        "does another attempt of the task get the same error?"
    )
    assert {cls.__name__ for cls in classes} == PERMANENT | RETRYABLE
    for cls in classes:
        # Instances, as raised (constructors differ), to go through is_retryable's lookup.
        error = cls.__new__(cls)
        assert is_retryable(error) is (cls.__name__ in RETRYABLE), cls.__name__


def test_a_data_change_is_retried_though_it_is_a_response_error() -> None:
    """``LuccaDataChangedError`` subclasses the permanent ``LuccaResponseError``: the most
    specific class decides."""
    assert is_retryable(LuccaDataChangedError("moved while paging"))


@pytest.mark.parametrize(
    "error",
    [
        LuccaRetriesExhaustedError("HTTP 503 after 6 attempts", attempts=6, status=503),
        LuccaServerError("HTTP 501", status=501),
        LuccaBudgetError("Redis unreachable"),
        LuccaLockError("lock held"),
        LuccaStorageError("disk full", phase="spool"),
        LuccaDataChangedError("moved"),
        RuntimeError("not ours"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_transient_error_goes_to_airflow_retries_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, failing_at_once_when_permanent():
        raise error
    assert raised.value is error


@pytest.mark.parametrize(
    "error",
    [
        LuccaAuthError("HTTP 401 Unauthorized: the API key is wrong", status=401),
        LuccaConfigError("Invalid session_end_from='2025-02-30'"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_permanent_error_fails_at_once_with_its_cause_and_message(error: LuccaError) -> None:
    with pytest.raises(AirflowFailException) as raised, failing_at_once_when_permanent():
        raise error
    assert raised.value.__cause__ is error
    assert str(raised.value) == f"{type(error).__name__}: {error} (not retried)"
    # Still of its class, with its attributes: code catching the typed error keeps working.
    assert isinstance(raised.value, type(error))
    assert raised.value.__dict__ == error.__dict__


DAG_FILE = """
import json
import os
from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator

def record(outcome):
    # What Airflow made of each try, as its task callbacks see it.

    def callback(context):
        ti = context["ti"]
        with open(os.environ["LUCCA_TRIES"], "a") as tries:
            tries.write(json.dumps([ti.task_id, ti.try_number, outcome]) + "\\n")

    return callback


with DAG(
    "lucca_permanent_failures",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    default_args={{
        "retries": 2,
        "retry_delay": timedelta(seconds=1),
        "on_retry_callback": record("up_for_retry"),
        "on_failure_callback": record("failed"),
    }},
    params={{"start": "2025-02-30"}},
) as dag:
    for task_id in ("wrong_key", "unavailable", "maintenance_page"):
        RealizedTrainingsOperator(
            task_id=task_id,
            lucca_conn_id="lucca_" + task_id,
            output_path={output!r} + "/" + task_id,
            session_end_from="2025-03-01",
            session_end_until="2025-03-03",
        )
    RealizedTrainingsOperator(
        task_id="bad_date",
        lucca_conn_id="lucca_bad_date",
        output_path={output!r} + "/bad_date",
        session_end_from="{{{{ params.start }}}}",
        session_end_until="2025-03-03",
    )

if __name__ == "__main__":
    from airflow.utils import db

    db.initdb()
    run = dag.test()
    tasks = {{
        ti.task_id: [ti.try_number, str(ti.state)] for ti in run.get_task_instances()
    }}
    print("LUCCA-TEST-RESULT " + json.dumps({{"tasks": tasks}}))
"""


@pytest.mark.slow
def test_retries_2_a_wrong_key_fails_after_one_try_a_503_is_retried(tmp_path: Path) -> None:
    home, dags, output = tmp_path / "airflow_home", tmp_path / "dags", tmp_path / "lake"
    dags.mkdir()
    dag_file = dags / "lucca_permanent_failures.py"
    dag_file.write_text(DAG_FILE.format(output=output.as_uri()))
    every_request = {
        "wrong_key": None,
        "unavailable": "503",
        "maintenance_page": "html",  # 200 with an HTML page: a proxy's or maintenance page
        "bad_date": None,
    }
    sandboxes = {
        task: SandboxServer(
            SandboxConfig(
                records=200, faults=FaultSchedule(rate=1.0, kinds=[kind]) if kind else None
            )
        )
        for task, kind in every_request.items()
    }
    try:
        for server in sandboxes.values():
            server.start()
        connections = {
            f"AIRFLOW_CONN_LUCCA_{task.upper()}": lucca_conn_json(
                server.url,
                **({"key": "a-wrong-key"} if task == "wrong_key" else {}),  # type: ignore[arg-type]
                max_retries=0,  # one request per try: the sandbox's log counts the tries
            )
            for task, server in sandboxes.items()
        }
        tries_file = tmp_path / "tries.jsonl"
        result, logs = run_child(dag_file, home, LUCCA_TRIES=str(tries_file), **connections)
        tries = sorted(json.loads(line) for line in tries_file.read_text().splitlines())
        statuses = {
            task: [entry["status"] for entry in server.request_log()["requests"]]
            for task, server in sandboxes.items()
        }
    finally:
        for server in sandboxes.values():
            server.stop()

    # 401: failed on try 1 of 3, one request; the typed cause and its message in the log.
    assert result["tasks"]["wrong_key"] == [1, "failed"]
    assert statuses["wrong_key"] == [401]
    assert (
        "LuccaAuthErrorNotRetried: LuccaAuthError: GET /talent-training/api/v2/realized-trainings "
        "-> HTTP 401 Unauthorized (the API key is wrong or revoked)" in logs
    )
    assert "The above exception was the direct cause" in logs  # the typed cause, chained
    assert "(not retried)" in logs
    # A 200 HTML page (a proxy's or a maintenance page in front of Lucca): it goes away, so
    # Airflow retries it like a 503 (an answer breaking the JSON contract fails at once).
    assert result["tasks"]["maintenance_page"] == [3, "failed"]
    assert statuses["maintenance_page"] == [200, 200, 200]
    # A date that renders wrong: failed before any request.
    assert result["tasks"]["bad_date"] == [1, "failed"]
    assert statuses["bad_date"] == []
    assert "LuccaConfigError" in logs
    # 503 on every request: each try gave up (retries exhausted), Airflow retried it twice, the
    # first two tries left it up for retry.
    assert result["tasks"]["unavailable"] == [3, "failed"]
    assert statuses["unavailable"] == [503, 503, 503]
    assert tries == [
        ["bad_date", 1, "failed"],
        ["maintenance_page", 1, "up_for_retry"],
        ["maintenance_page", 2, "up_for_retry"],
        ["maintenance_page", 3, "failed"],
        ["unavailable", 1, "up_for_retry"],
        ["unavailable", 2, "up_for_retry"],
        ["unavailable", 3, "failed"],
        ["wrong_key", 1, "failed"],
    ]
    assert "a-wrong-key" not in logs
