"""Child of tests/test_metrics.py: runs the DAG its environment's DAGs folder holds with
``dag.test()``, in its own AIRFLOW_HOME and with Airflow's metrics configured by the environment,
then prints the run's state and each task's XCom as one JSON line."""

from __future__ import annotations

import importlib
import json
import os
import sys


def main() -> None:
    from airflow.utils import db

    db.initdb()
    sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    module = importlib.import_module(os.environ["METRICS_DAG_MODULE"])
    run = module.dag.test()
    result = {
        "state": str(run.state),
        "xcom": {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()},
    }
    print("LUCCA-METRICS-RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
