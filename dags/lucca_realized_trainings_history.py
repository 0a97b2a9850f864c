"""First load of a long history in one pass: one request stream, daily partitions out.

Trigger it with the ``from`` / ``until`` params (``until`` excluded), for example from the UI's
"Trigger DAG" form or::

    airflow dags trigger lucca_realized_trainings_history \\
        --conf '{"from": "2023-01-01", "until": "2026-01-01"}'

Three years take about as many requests as records / 100 (a few minutes at 50 requests/min),
instead of 1,000+ daily runs of at least one request each. The layout is the daily DAG's, so the
daily DAG takes over from the last day loaded. The ``tenants`` param limits the load to some
tenants of the list (``--conf '{"tenants": ["acme-fr"], ...}'``); empty, every tenant is loaded.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag
from lucca_common import TIMEZONE
from lucca_fleet import fleet


@dag(
    dag_id="lucca_realized_trainings_history",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz=TIMEZONE),
    catchup=False,
    max_active_runs=1,
    params={
        "from": Param("2025-01-01", type="string", format="date", title="First day (included)"),
        "until": Param("2025-04-01", type="string", format="date", title="Last day (excluded)"),
        "tenants": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Tenants (empty: all)",
            description="Names from the Variable lucca_tenants; empty loads every tenant.",
        ),
    },
    tags=["lucca", "example"],
    doc_md=__doc__,
)
def lucca_realized_trainings_history() -> None:
    fleet(
        session_end_from="{{ params['from'] }}",
        session_end_until="{{ params['until'] }}",
    )


lucca_realized_trainings_history_dag = lucca_realized_trainings_history()
