"""Child of tests/test_openlineage.py, copied into the DAGs folder of its own AIRFLOW_HOME
(``dag.test()`` runs DAGs parsed from there).

It defines one DAG per entry of ``LUCCA_OL_RUNS``, a JSON list of ``{"dag_id", "operator":
"extract" | "reconcile", "kwargs"}`` (or ``{"mutate": {"url", "token", "body"}}`` to change the
sandbox's data between two runs). Run as a script, it runs them in order with ``dag.test()``, the
OpenLineage provider configured by the environment (a file transport), and prints each run's
state and its task's XCom as one JSON line."""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.reconcile import RealizedTrainingsReconcileOperator

OPERATORS: dict[str, Any] = {
    "extract": RealizedTrainingsOperator,
    "reconcile": RealizedTrainingsReconcileOperator,
}
PLAN: list[dict[str, Any]] = json.loads(os.environ.get("LUCCA_OL_RUNS", "[]"))
DAGS: dict[str, DAG] = {}
for entry in PLAN:
    if "dag_id" in entry:
        with DAG(
            entry["dag_id"],
            schedule=None,
            start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
            catchup=False,
        ) as DAGS[entry["dag_id"]]:
            OPERATORS[entry["operator"]](task_id="lucca", retries=0, **entry["kwargs"])


def mutate(url: str, token: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url + "/_sandbox/mutate",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        answer.read()


def main() -> None:
    from airflow.utils import db

    db.initdb()
    results: dict[str, Any] = {}
    for entry in PLAN:
        if "mutate" in entry:
            mutate(**entry["mutate"])
            continue
        dag_run = DAGS[entry["dag_id"]].test()
        (ti,) = dag_run.get_task_instances()
        results[entry["dag_id"]] = {
            "state": str(dag_run.state),
            "summary": ti.xcom_pull(task_ids="lucca") if str(ti.state) == "success" else None,
        }
    print("LUCCA-OL-RESULT " + json.dumps(results))


if __name__ == "__main__":
    main()
