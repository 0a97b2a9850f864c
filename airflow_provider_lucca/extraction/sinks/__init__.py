"""Where a run's records go: one strategy object per output, chosen by ``file_format``.

- :class:`~.files.FilesSink`: ``jsonl`` / ``parquet`` part files under ``session_end_on=`` days,
  committed day by day through manifests, runs taking turns under the dataset lock;
- :class:`~.delta.DeltaSink` and :class:`~.iceberg.IcebergSink`: one table commit per run that
  replaces the whole extracted window, concurrent runs settled by the table's own optimistic
  concurrency.

The extraction reads and deduplicates; a sink only stores what it is handed. Table sinks import
their libraries lazily: ``from airflow_provider_lucca.extraction.sinks import ...`` costs nothing.
"""

from airflow_provider_lucca.extraction.sinks.base import (
    Committed,
    DayRecords,
    NoGuard,
    OutputSink,
    RunGuard,
)

__all__ = ["Committed", "DayRecords", "NoGuard", "OutputSink", "RunGuard"]
