"""The example DAGs' fan-out over tenants: one extract -> verify -> derive per Lucca account
(defines no DAG).

``tenants`` reads the tenant list (the Airflow Variable ``lucca_tenants``, README "Scaling") when
the run starts; ``per_tenant`` is a mapped task group, so each tenant's tasks depend only on that
tenant's: a failing account fails its own tasks and leaves the others committed. ``fleet_summary``
runs whatever happened and fails the run, naming the failed tenants, when any did not commit.
Each mapped task is labelled with its tenant in the UI.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from airflow.sdk import get_current_context, task, task_group
from lucca_common import (
    LUCCA_POOL,
    OUTPUT_TARGET,
    REALIZED_TRAININGS,
    tenant_targets,
)
from lucca_training_hours_report import derive
from lucca_verify import label_task, tenant_label, verify

from airflow_provider_lucca.extraction.reconcile import ReconcileSummary
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from airflow_provider_lucca.operators.reconcile import RealizedTrainingsReconcileOperator

#: The UI label of a tenant's mapped tasks (the connection id of a single account).
TENANT_LABEL = "{{ task.tenant or task.lucca_conn_id }}"


@task
def tenants() -> list[dict[str, Any]]:
    """The accounts this run extracts, as operator arguments: the tenants the run's ``tenants``
    param names (a DAG may offer one, like the history DAG), else all of the list."""
    names = get_current_context()["params"].get("tenants") or None
    targets = tenant_targets(names)
    print("Tenants:", ", ".join(target["tenant"] or target["lucca_conn_id"] for target in targets))
    return targets


def per_tenant(**extract_args: Any) -> Any:
    """The mapped task group ``tenant``: extract (with ``extract_args``), verify, derive."""

    @task_group(group_id="tenant")
    def tenant(
        tenant: str | None,
        lucca_conn_id: str,
        owner_ids: list[int] | None,
        training_ids: list[int] | None,
        has_attended: bool | None,
    ) -> Any:
        extract = RealizedTrainingsOperator(
            task_id="extract",
            tenant=tenant,
            lucca_conn_id=lucca_conn_id,
            owner_ids=owner_ids,
            training_ids=training_ids,
            has_attended=has_attended,
            **OUTPUT_TARGET,
            pool=LUCCA_POOL,
            outlets=[REALIZED_TRAININGS],
            map_index_template=TENANT_LABEL,
            **extract_args,
        )
        return derive(verify(extract.output))

    return tenant


def reconcile_per_tenant() -> Any:
    """The mapped task group ``tenant`` of the reconciliation: reconcile, then derive the
    reports of the months whose days it rewrote."""

    @task_group(group_id="tenant")
    def tenant(
        tenant: str | None,
        lucca_conn_id: str,
        owner_ids: list[int] | None,
        training_ids: list[int] | None,
        has_attended: bool | None,
    ) -> Any:
        reconcile = RealizedTrainingsReconcileOperator(
            task_id="reconcile",
            tenant=tenant,
            lucca_conn_id=lucca_conn_id,
            owner_ids=owner_ids,
            training_ids=training_ids,
            has_attended=has_attended,
            **OUTPUT_TARGET,
            pool=LUCCA_POOL,
            outlets=[REALIZED_TRAININGS],
            map_index_template=TENANT_LABEL,
        )
        return derive(rewritten_days(reconcile.output))

    return tenant


@task(map_index_template="{{ tenant_label }}")
def rewritten_days(summary: ReconcileSummary) -> dict[str, Any]:
    """The days a reconciliation rewrote, as ``derive`` reads an extraction's summary: the
    reports of their months are computed again (none when nothing changed)."""
    label_task(tenant_label(summary))
    return {
        "output_path": summary["output_path"],
        "file_format": summary["file_format"],
        "tenant": summary["tenant"],
        "partitions": {
            change["day"]: change["records_now"]
            for change in summary["changed_days"]
            if change["records_now"] is not None
        },
    }


# No retry: it only reports what the tenants did, and retrying changes nothing.
@task(trigger_rule="all_done", retries=0)
def fleet_summary(targets: list[dict[str, Any]], reports: Iterable[Any] | None) -> dict[str, Any]:
    """Which tenants went through extract, verify and derive; fails naming the others, so the
    run is marked failed while every other tenant's data stays committed."""
    # A group mapped over one tenant hands over its one report, not a list of one; nothing when
    # that tenant failed.
    items = [] if reports is None else [reports] if isinstance(reports, dict) else list(reports)
    done = {tenant_label(report) for report in items if report}
    expected = [target["tenant"] or target["lucca_conn_id"] for target in targets]
    failed = [name for name in expected if name not in done]
    summary = {"tenants": expected, "succeeded": sorted(done), "failed": failed}
    print(f"{len(done)} of {len(expected)} tenants committed and verified", summary)
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {len(expected)} tenants failed: {', '.join(failed)} "
            "(their mapped tasks say why; the other tenants are committed)."
        )
    return summary


def fleet(per: Callable[..., Any] = per_tenant, **extract_args: Any) -> Any:
    """Wire ``tenants >> per (mapped: the tenant group by default) >> fleet_summary`` in the
    current DAG."""
    targets = tenants()
    reports = per(**extract_args).expand_kwargs(targets)
    return fleet_summary(targets, reports)


__all__ = [
    "fleet",
    "fleet_summary",
    "per_tenant",
    "reconcile_per_tenant",
    "rewritten_days",
    "tenants",
]
