"""The client's metrics sent through Airflow's own metrics (StatsD, Datadog, OpenTelemetry).

A platform team already collects Airflow's metrics; the provider's go the same way, configured by
the same ``[metrics]`` settings, so nothing is set up twice. Every name is
``lucca.<account>.<event>`` (``<account>`` from
:func:`~airflow_provider_lucca.client.metrics.account_label`), so plain StatsD, which has no tags,
can still tell which Lucca account keeps hitting 429; the account is also passed as the tag
``account`` for the backends that keep tags (Datadog, OpenTelemetry, StatsD with InfluxDB tags).

Metrics are a side channel: with none of ``statsd_on``, ``statsd_datadog_enabled``, ``otel_on``
set, the hook gets :data:`~airflow_provider_lucca.client.metrics.NO_METRICS` and nothing runs
per request but an empty call; a backend that raises is switched off for the rest of the task
with one warning, never failing it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, Protocol

from airflow.sdk import conf

from airflow_provider_lucca.client import metrics as events
from airflow_provider_lucca.client.metrics import NO_METRICS, Metrics, account_label

__all__ = ["METRICS_SWITCHES", "AirflowMetrics", "airflow_metrics", "metrics_enabled", "report_run"]

log = logging.getLogger(__name__)

#: ``(section, key)`` of the settings that turn Airflow's metrics on.
METRICS_SWITCHES = (
    ("metrics", "statsd_on"),
    ("metrics", "statsd_datadog_enabled"),
    ("metrics", "otel_on"),
)


class StatsBackend(Protocol):
    """The part of Airflow's ``Stats`` the provider uses."""

    def incr(
        self, stat: str, count: int | None = None, rate: float | None = None, *, tags: Any = None
    ) -> None: ...

    def timing(self, stat: str, dt: Any, *, tags: Any = None) -> None: ...


class AirflowMetrics:
    """:class:`~airflow_provider_lucca.client.metrics.Metrics` sent to Airflow's ``Stats``.

    :param account: the account label, the second segment of every name.
    :param backend: Airflow's ``Stats`` (the task SDK's, as task code must use in Airflow 3).
    """

    def __init__(self, account: str, backend: StatsBackend) -> None:
        self.account = account
        self._prefix = f"{events.PREFIX}.{account}."
        self._tags = {"account": account}
        self._backend: StatsBackend | None = backend

    def incr(self, name: str, count: int = 1) -> None:
        backend = self._backend
        if backend is None:
            return
        try:
            backend.incr(self._prefix + name, count, tags=self._tags)
        except Exception as exc:
            self._off(exc)

    def timing(self, name: str, seconds: float) -> None:
        backend = self._backend
        if backend is None:
            return
        try:
            # A timedelta: every backend takes a bare number as milliseconds.
            backend.timing(self._prefix + name, timedelta(seconds=seconds), tags=self._tags)
        except Exception as exc:
            self._off(exc)

    def _off(self, exc: Exception) -> None:
        self._backend = None
        log.warning(
            "Lucca metrics are off for the rest of this task: Airflow's metrics backend failed "
            "(%s: %s). The extraction goes on.",
            type(exc).__name__,
            exc,
        )


def metrics_enabled() -> bool:
    """Whether Airflow sends metrics anywhere (read once per hook, not per request)."""
    try:
        return any(conf.getboolean(*switch, fallback=False) for switch in METRICS_SWITCHES)
    except Exception:  # an unreadable value: Airflow's own metrics would not start either
        return False


def airflow_metrics(base_url: str) -> Metrics:
    """The metrics of a client of the account at ``base_url``: Airflow's, when they are on."""
    if not metrics_enabled():
        return NO_METRICS
    try:
        from airflow.sdk.observability.stats import Stats
    except ImportError:  # a task SDK without its metrics module: nothing to send them to
        return NO_METRICS
    return AirflowMetrics(account_label(base_url), Stats)


def run_counts(summary: object) -> dict[str, int]:
    """What a run's summary says it wrote: an extraction's (``records``, ``partitions``,
    ``reads``) or a reconciliation's (``records_rewritten``, ``re_extracted`` days); empty for
    anything else."""
    if not isinstance(summary, Mapping):
        return {}
    if "partitions" in summary and "records" in summary:
        return {
            events.RECORDS_WRITTEN: int(summary["records"]),
            events.DAYS_WRITTEN: len(summary["partitions"]),
            events.READS: int(summary.get("reads") or 0),
        }
    if "records_rewritten" in summary:
        return {
            events.RECORDS_WRITTEN: int(summary["records_rewritten"]),
            events.DAYS_WRITTEN: sum(_days(span) for span in summary.get("re_extracted") or ()),
        }
    return {}


def report_run(metrics: Metrics, summary: object) -> None:
    """Count what the run wrote; never raises (the run has committed by now)."""
    try:
        counts = run_counts(summary)
    except Exception as exc:  # a summary of an unexpected shape is not worth failing a run
        log.warning(
            "Lucca metrics: the run's summary is unreadable (%s: %s)", type(exc).__name__, exc
        )
        return
    for name, count in counts.items():
        metrics.incr(name, count)


def _days(span: Mapping[str, str]) -> int:
    return (date.fromisoformat(span["until"]) - date.fromisoformat(span["from"])).days
