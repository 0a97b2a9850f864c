"""Run the example DAGs with ``dag.test()`` in this process (called by demo.py with its env).

Usage: ``run_dag_tests.py history FROM UNTIL`` or ``run_dag_tests.py daily DAY [DAY...]``.
"""

from __future__ import annotations

import importlib
import os
import sys

import pendulum


def main(argv: list[str]) -> int:
    from airflow.sdk import DagRunState

    sys.path.insert(0, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    kind, *values = argv
    dag = importlib.import_module(f"lucca_realized_trainings_{kind}").__dict__[
        f"lucca_realized_trainings_{kind}_dag"
    ]
    runs = []
    if kind == "history":
        runs.append(dag.test(run_conf={"from": values[0], "until": values[1]}))
    else:
        for day in values:
            # dag.test() infers the data interval that ENDS at the date it is given, so the run
            # that covers day D in Europe/Paris, [D, D+1), is tested at D+1.
            end = pendulum.parse(day, tz="Europe/Paris").add(days=1)
            runs.append(dag.test(logical_date=end))
    failed = [run.run_id for run in runs if run.state != DagRunState.SUCCESS]
    if failed:
        print(f"Failed runs: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
