"""RealizedTrainingsReconcileOperator: find late imports and deletions anywhere in history from
Lucca's counts, and re-extract only the days that differ."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from airflow_provider_lucca.client.errors import LuccaConfigError
from airflow_provider_lucca.extraction.reconcile import (
    ReconcileRequest,
    ReconcileSummary,
    reconcile_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.operators.asset_events import reconcile_event_extra
from airflow_provider_lucca.operators.failures import failing_at_once_when_permanent
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator

if TYPE_CHECKING:
    from airflow.sdk import Context


class RealizedTrainingsReconcileOperator(RealizedTrainingsOperator):
    """Compare every month of a dataset with Lucca's counts; re-extract the days that differ.

    Takes the parameters of :class:`RealizedTrainingsOperator` for the same output (path or
    table, format, tenant, connection, and the filters the dataset was extracted with), except
    ``lookback_days``. When nothing changed it costs two requests per month of history (one when
    ``has_attended`` is set) and writes nothing; a changed day costs a few requests to find, then
    its re-extraction. What counts cannot see (an edit that changes no count) is in the README.

    :param session_end_from: first day to compare, included; with ``session_end_until``, the day
        after the last. Omit both (the default) to compare everything committed, from the first
        committed day to the last. (templated)
    """

    ui_color = "#e6f0d5"

    def __init__(
        self,
        *,
        session_end_from: str | date | None = None,
        session_end_until: str | date | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs.get("lookback_days", 0) != 0:
            raise LuccaConfigError(
                f"Invalid lookback_days={kwargs['lookback_days']!r}: a reconciliation compares "
                "the days it is given (session_end_from / session_end_until, or everything "
                "committed); remove lookback_days."
            )
        super().__init__(
            session_end_from=session_end_from, session_end_until=session_end_until, **kwargs
        )

    def execute(self, context: Context) -> ReconcileSummary:  # type: ignore[override]
        with failing_at_once_when_permanent():
            summary = self._reconcile(context)
        self._attach_asset_event(context, reconcile_event_extra(summary))
        return summary

    def _reconcile(self, context: Context) -> ReconcileSummary:
        self._check_target(
            self.file_format, self.output_path, self.iceberg_table, self.iceberg_conn_id
        )  # rendered by now
        owner_ids, training_ids, has_attended = self._filters(lambda _: True)
        window = self._window(lambda _: True, context)
        request = ReconcileRequest(
            window=window,
            owner_ids=owner_ids,
            has_attended=has_attended,
            training_ids=training_ids,
            file_format=self.file_format,
            fail_on_count_mismatch=self.fail_on_count_mismatch,
            max_rereads=self.max_rereads,
            confirm_reads=self.confirm_reads,
            tenant=self._tenant(),
        )
        self.log.info(
            "Reconciling %s (%s) with Lucca's counts",
            self.iceberg_table or self.output_path,
            window or "every committed day",
        )
        output = self._output()
        return self._with_lucca(
            lambda client: reconcile_realized_trainings(
                client,
                request,
                output,
                log=self.log,
                run_id=context.get("run_id"),
                lock_policy=self.lock_policy,
            )
        )

    def _window(
        self, ready: Callable[[object], bool], context: Context | None
    ) -> DateWindow | None:
        """The days given, or None (everything committed): never the run's data interval."""
        if self.session_end_from in (None, "") and self.session_end_until in (None, ""):
            return None
        return super()._window(ready, context)
