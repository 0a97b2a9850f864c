"""Child of tests/test_fleet.py: runs the example daily and history DAGs with ``dag.test()`` in
its own AIRFLOW_HOME (its environment sets the tenant list, the connections and the output) and
prints each run's task instances as one JSON line."""

from __future__ import annotations

import json
import os
import sys

import pendulum


def main() -> None:
    from airflow.utils import db

    db.initdb()
    sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    import lucca_realized_trainings_daily
    import lucca_realized_trainings_history

    runs = {
        "daily": lucca_realized_trainings_daily.lucca_realized_trainings_daily_dag.test(
            logical_date=pendulum.datetime(2025, 3, 11, tz="Europe/Paris")
        ),
        "history": lucca_realized_trainings_history.lucca_realized_trainings_history_dag.test(
            run_conf={"from": "2025-04-01", "until": "2025-05-01", "tenants": ["beta"]}
        ),
    }
    result = {
        name: {
            "state": str(run.state),
            "tasks": sorted(
                [ti.task_id, ti.map_index, str(ti.state), ti.rendered_map_index]
                for ti in run.get_task_instances()
            ),
        }
        for name, run in runs.items()
    }
    print("LUCCA-FLEET-RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
