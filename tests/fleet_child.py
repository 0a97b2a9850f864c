"""Child of tests/test_fleet.py: runs the example daily and history DAGs with ``dag.test()`` in
its own AIRFLOW_HOME (its environment sets the tenant list, the connections and the output), then
changes old data of one tenant in its sandbox (``FLEET_MUTATE``: the admin URL, token and body)
and runs the reconciliation DAG; prints each run's task instances and the mutation as one JSON
line."""

from __future__ import annotations

import json
import os
import sys
import urllib.request

import pendulum


def main() -> None:
    from airflow.utils import db

    db.initdb()
    sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    import lucca_realized_trainings_daily
    import lucca_realized_trainings_history
    import lucca_realized_trainings_reconcile

    runs = {
        "daily": lucca_realized_trainings_daily.lucca_realized_trainings_daily_dag.test(
            logical_date=pendulum.datetime(2025, 3, 11, tz="Europe/Paris")
        ),
        "history": lucca_realized_trainings_history.lucca_realized_trainings_history_dag.test(
            run_conf={"from": "2025-04-01", "until": "2025-05-01", "tenants": ["beta"]}
        ),
    }
    mutation = json.loads(os.environ["FLEET_MUTATE"])
    request = urllib.request.Request(
        mutation["url"] + "/_sandbox/mutate",
        data=json.dumps(mutation["body"]).encode(),
        headers={"Authorization": f"Bearer {mutation['token']}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        changes = json.loads(answer.read())["changes"]
    reconcile = lucca_realized_trainings_reconcile.lucca_realized_trainings_reconcile_dag
    runs["reconcile"] = reconcile.test(logical_date=pendulum.datetime(2025, 6, 1, tz="UTC"))
    result: dict[str, object] = {
        name: {
            "state": str(run.state),
            "tasks": sorted(
                [ti.task_id, ti.map_index, str(ti.state), ti.rendered_map_index]
                for ti in run.get_task_instances()
            ),
            "xcom": {
                ti.rendered_map_index: ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
                for ti in run.get_task_instances()
                if ti.task_id == "tenant.reconcile" and str(ti.state) == "success"
            },
        }
        for name, run in runs.items()
    }
    result["mutation"] = changes
    print("LUCCA-FLEET-RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
