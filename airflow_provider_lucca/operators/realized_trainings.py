"""RealizedTrainingsOperator: a date window of Lucca realized trainings into daily partitions."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, tzinfo
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import Asset, BaseOperator, ObjectStoragePath

from airflow_provider_lucca.client.errors import (
    LuccaConfigError,
)
from airflow_provider_lucca.client.query import validate_bool, validate_ids
from airflow_provider_lucca.extraction.lock import (
    DEFAULT_LOCK_LEASE,
    DEFAULT_LOCK_TIMEOUT,
    LockPolicy,
)
from airflow_provider_lucca.extraction.realized_trainings import (
    DEFAULT_MAX_REREADS,
    MAX_REREADS,
    ExtractionRequest,
    ExtractionSummary,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.sinks import OutputSink
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.hooks.lucca import LuccaHook
from airflow_provider_lucca.operators.asset_events import extraction_event_extra
from airflow_provider_lucca.operators.failures import failing_at_once_when_permanent
from airflow_provider_lucca.operators.lineage import LineageMixin
from airflow_provider_lucca.operators.table_sinks import (
    DEFAULT_ICEBERG_CONN_ID,
    delta_sink,
    iceberg_asset_uri,
    iceberg_sink,
    validate_table_identifier,
)
from airflow_provider_lucca.tenants import validate_tenant_name

#: Directory prefix of a tenant's dataset under ``output_path`` (files formats).
TENANT_DIR_PREFIX = "tenant="

#: Files with manifests, then the open table formats.
FILE_FORMATS = ("jsonl", "parquet", "delta", "iceberg")

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_lucca.client import LuccaClient

T = TypeVar("T")


class RealizedTrainingsOperator(LineageMixin, BaseOperator):
    """Extract Lucca's realized trainings of a date window into ``session_end_on=`` partitions.

    Each run replaces every partition of its window (plus lookback) through a manifest commit, so
    re-runs and backfills are idempotent; see the README for the layout and manifest schema.

    :param output_path: dataset root for ``ObjectStoragePath``, e.g.
        ``s3://aws_default@lake/lucca/realized_trainings`` or ``file:///data/lucca/realized``;
        with ``file_format="delta"``, the Delta table's root (the connection in the URL gives
        delta-rs its credentials). Not used with ``"iceberg"``. (templated)
    :param lucca_conn_id: the ``lucca`` connection. (templated)
    :param session_end_from: first day of the window on ``sessionEndsOn``, included; a date or
        ``YYYY-MM-DD``. Omit both bounds to use the run's data interval, in the DAG's timezone.
        (templated)
    :param session_end_until: day after the window, excluded. (templated)
    :param owner_ids: employee ids to keep (list, JSON list or comma list). (templated)
    :param has_attended: True / False to filter on attendance, None for all. (templated)
    :param training_ids: training ids to keep. (templated)
    :param lookback_days: also refresh the N days before the window, where late CSV imports land.
    :param file_format: ``"jsonl"`` (gzip JSON lines, records as received), ``"parquet"``
        (typed columns; the ``parquet`` extra): files with manifests; ``"delta"`` or
        ``"iceberg"`` (the ``delta`` / ``iceberg`` extras): a table, one atomic commit per run.
    :param iceberg_table: ``namespace.table`` in the Iceberg catalog, created on first run.
        (templated)
    :param iceberg_conn_id: the connection describing the Iceberg catalog (README "Tables").
    :param tenant: the tenant's name when one output holds several Lucca accounts (README
        "Scaling"): files go under ``<output_path>/tenant=<name>/``, table rows get a ``tenant``
        partition column, and a run replaces only its tenant's days. None: one account, the
        layout of a single-tenant dataset. (templated)
    :param fail_on_count_mismatch: fail when the records received differ from the API's count.
    :param max_window_days: the longest window a run may extract, lookback included.
    :param max_rereads: read the window again, at most this many times, when a read shows that
        Lucca's data changed while paging (a record served on two days, a changing count).
    :param confirm_reads: commit a read only when a second read served the same records on the
        same days (twice the requests; catches a record leaving the window while another enters).
    :param lock_timeout: seconds to wait for the dataset lock held by another run, then fail.
    :param lock_lease: seconds the dataset lock outlives its run if the run is killed.
    """

    template_fields: Sequence[str] = (
        "output_path",
        "iceberg_table",
        "lucca_conn_id",
        "session_end_from",
        "session_end_until",
        "owner_ids",
        "has_attended",
        "training_ids",
        "tenant",
    )
    ui_color = "#ffe6d5"

    def __init__(
        self,
        *,
        output_path: str | None = None,
        lucca_conn_id: str = LuccaHook.default_conn_name,
        session_end_from: str | date | None = None,
        session_end_until: str | date | None = None,
        owner_ids: Sequence[int] | str | None = None,
        has_attended: bool | str | None = None,
        training_ids: Sequence[int] | str | None = None,
        lookback_days: int = 0,
        file_format: str = "jsonl",
        fail_on_count_mismatch: bool = True,
        max_window_days: int = DateWindow.DEFAULT_MAX_WINDOW_DAYS,
        max_rereads: int = DEFAULT_MAX_REREADS,
        confirm_reads: bool = False,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        lock_lease: float = DEFAULT_LOCK_LEASE,
        iceberg_table: str | None = None,
        iceberg_conn_id: str = DEFAULT_ICEBERG_CONN_ID,
        tenant: str | None = None,
        **kwargs: Any,
    ) -> None:
        # Catch mistakes when the DAG is parsed, not at 3 a.m.: everything not templated is
        # checked now, the rest again after rendering.
        if file_format not in FILE_FORMATS:
            raise LuccaConfigError(
                f"Invalid file_format={file_format!r}: expected one of "
                + ", ".join(repr(name) for name in FILE_FORMATS)
                + "."
            )
        asset = self._check_target(file_format, output_path, iceberg_table, iceberg_conn_id)
        if "outlets" not in kwargs and asset is not None:
            kwargs["outlets"] = [Asset(asset)]
        if tenant is not None and not _is_template(tenant):
            validate_tenant_name(tenant)
        super().__init__(**kwargs)
        self.tenant = tenant
        self.output_path = output_path
        self.iceberg_table = iceberg_table
        self.iceberg_conn_id = iceberg_conn_id
        self.lucca_conn_id = lucca_conn_id
        self.session_end_from = session_end_from
        self.session_end_until = session_end_until
        self.owner_ids = owner_ids
        self.has_attended = has_attended
        self.training_ids = training_ids
        self.lookback_days = lookback_days
        self.file_format = file_format
        self.fail_on_count_mismatch = fail_on_count_mismatch
        DateWindow.validate_lookback_days(lookback_days)
        # The longest window (lookback included) a run may extract; see _window.
        self.max_window_days = DateWindow.validate_max_window_days(max_window_days)
        if (
            isinstance(max_rereads, bool)
            or not isinstance(max_rereads, int)
            or not 0 <= max_rereads <= MAX_REREADS
        ):
            raise LuccaConfigError(
                f"Invalid max_rereads={max_rereads!r}: expected an integer from 0 to {MAX_REREADS}."
            )
        self.max_rereads = max_rereads
        for name, flag in (
            ("confirm_reads", confirm_reads),
            ("fail_on_count_mismatch", fail_on_count_mismatch),
        ):
            if not isinstance(flag, bool):
                raise LuccaConfigError(f"Invalid {name}={flag!r}: expected True or False.")
        self.confirm_reads = confirm_reads
        self.lock_policy = LockPolicy(timeout=lock_timeout, lease=lock_lease)
        self._validate(rendered=False)

    @staticmethod
    def _check_target(
        file_format: str,
        output_path: str | None,
        iceberg_table: str | None,
        iceberg_conn_id: str,
    ) -> str | None:
        """Check where the records go; return the Asset URI of the output, when known yet."""
        if file_format == "iceberg":
            if output_path is not None:
                raise LuccaConfigError(
                    "output_path is not used with file_format='iceberg': the table's location "
                    "comes from its catalog (iceberg_conn_id); remove output_path."
                )
            if _is_template(iceberg_table):
                return None
            table = validate_table_identifier(iceberg_table)
            return iceberg_asset_uri(iceberg_conn_id, table)
        if iceberg_table is not None:
            raise LuccaConfigError(
                f"iceberg_table is only used with file_format='iceberg' (not {file_format!r})."
            )
        if _is_template(output_path):
            return None
        return _asset_uri_of(storage_url(output_path))

    @cached_property
    def hook(self) -> LuccaHook:
        return LuccaHook(lucca_conn_id=self.lucca_conn_id)

    def execute(self, context: Context) -> ExtractionSummary:
        # A parameter found wrong only now, once rendered, is wrong in every attempt.
        with failing_at_once_when_permanent():
            summary = self._extract(context)
        self._attach_asset_event(context, extraction_event_extra(summary))
        return summary

    def _attach_asset_event(self, context: Context, extra: dict[str, Any]) -> None:
        """Put what the run changed into the ``extra`` of its outlet Asset's event, for the DAGs
        scheduled on the dataset (README "Asset events"): the outlets whose URI is this
        output's (the default outlet, or the one a DAG gives), never another asset's."""
        uri = self._check_target(
            self.file_format, self.output_path, self.iceberg_table, self.iceberg_conn_id
        )
        # A context built by hand (``execute({...})`` outside a task run) has no outlet events.
        events = context.get("outlet_events")
        if uri is None or events is None:
            return
        mine = Asset(uri).uri  # normalised as Airflow normalises an outlet's URI
        for outlet in self.outlets:
            if isinstance(outlet, Asset) and outlet.uri == mine:
                events[outlet].extra.update(extra)

    def _extract(self, context: Context) -> ExtractionSummary:
        self._check_target(
            self.file_format, self.output_path, self.iceberg_table, self.iceberg_conn_id
        )  # rendered by now
        request = self._validate(rendered=True, context=context)
        assert request is not None  # rendered, with a context: always a full request
        self.log.info(
            "Extracting realized trainings %s (lookback %d days) to %s as %s",
            request.window,
            request.lookback_days,
            self.iceberg_table or self.output_path,
            self.file_format,
        )
        output = self._output()
        return self._with_lucca(
            lambda client: extract_realized_trainings(
                client,
                request,
                output,
                log=self.log,
                run_id=context.get("run_id"),
                lock_policy=self.lock_policy,
            )
        )

    def _with_lucca(self, work: Callable[[LuccaClient], T]) -> T:
        """Run ``work`` with the connection's client (closed after); ``execute`` runs it inside
        :func:`failing_at_once_when_permanent`."""
        if self.tenant is not None:
            self.log.info("Tenant %s (connection %s)", self._tenant(), self.lucca_conn_id)
        self.run_summary = None
        try:
            result = work(self.hook.client)
            self.hook.report_run(result)  # records and days written, as metrics (README "Metrics")
            self.run_summary = result
            return result
        finally:
            self.hook.close()

    def _output(self) -> ObjectStoragePath | OutputSink:
        """The dataset root for files, or the table sink (built only now: it may read
        connections, which a DAG file must not do when it is parsed)."""
        tenant = self._tenant()
        if self.file_format == "iceberg":
            assert self.iceberg_table is not None  # _check_target
            return iceberg_sink(
                self.iceberg_conn_id, validate_table_identifier(self.iceberg_table), tenant=tenant
            )
        url = storage_url(self.output_path)
        root = ObjectStoragePath(url)
        refuse_other_layout(root, self.file_format, tenant=tenant)
        if self.file_format == "delta":
            return delta_sink(url, tenant=tenant)
        return root / f"{TENANT_DIR_PREFIX}{tenant}" if tenant is not None else root

    def _tenant(self) -> str | None:
        """The rendered tenant name; an empty rendering (an unset template) means none."""
        if self.tenant is None or (isinstance(self.tenant, str) and not self.tenant.strip()):
            return None
        return validate_tenant_name(self.tenant)

    def _validate(
        self, *, rendered: bool, context: Context | None = None
    ) -> ExtractionRequest | None:
        """Check every parameter but ``output_path`` (checked by the caller) and build the request.

        Before rendering (``rendered=False``, at DAG parse time), values holding Jinja are left
        for later and None is returned; after rendering, everything is checked.
        """

        def ready(value: object) -> bool:
            return rendered or not _is_template(value)

        owner_ids, training_ids, has_attended = self._filters(ready)
        window = self._window(ready, context)
        if window is None:
            return None
        return ExtractionRequest(
            window=window,
            lookback_days=self.lookback_days,
            owner_ids=owner_ids,
            has_attended=has_attended,
            training_ids=training_ids,
            file_format=self.file_format,
            fail_on_count_mismatch=self.fail_on_count_mismatch,
            max_rereads=self.max_rereads,
            confirm_reads=self.confirm_reads,
            tenant=self._tenant() if rendered else None,
        )

    def _filters(
        self, ready: Callable[[object], bool]
    ) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None, bool | None]:
        """``owner_ids``, ``training_ids``, ``has_attended``, parsed once rendered (a value still
        holding a template is left for later: None)."""
        owner_ids = parse_ids("owner_ids", self.owner_ids) if ready(self.owner_ids) else None
        training_ids = (
            parse_ids("training_ids", self.training_ids) if ready(self.training_ids) else None
        )
        has_attended = (
            parse_bool("has_attended", self.has_attended) if ready(self.has_attended) else None
        )
        return owner_ids, training_ids, has_attended

    def _window(
        self, ready: Callable[[object], bool], context: Context | None
    ) -> DateWindow | None:
        bounds = (self.session_end_from, self.session_end_until)
        unset = [bound in (None, "") for bound in bounds]
        window: DateWindow | None
        if all(unset):
            window = _window_from_context(context) if context is not None else None
        elif any(unset):
            raise LuccaConfigError(
                "Set both session_end_from and session_end_until, or neither to use the run's "
                f"data interval (got {bounds[0]!r} and {bounds[1]!r})."
            )
        else:
            window = DateWindow.parse(*bounds) if all(map(ready, bounds)) else None
        if window is not None:
            # Dates are within 1900..2199 (DateWindow); the lookback must stay there too, and the
            # whole extracted span within max_window_days, so a century typo fails here.
            window.check_span(self.lookback_days, self.max_window_days)
        return window


def _window_from_context(context: Context) -> DateWindow:
    start = context.get("data_interval_start")
    end = context.get("data_interval_end")
    if start is None or end is None:
        raise LuccaConfigError(
            "This run has no data interval: pass session_end_from / session_end_until, or "
            "schedule the DAG with a data-interval timetable."
        )
    return DateWindow.from_data_interval(start, end, schedule_timezone(context["dag"]))


def schedule_timezone(dag: Any) -> tzinfo:
    """The timezone the DAG's days are cut in: its timetable's, else the DAG's.

    ``dag.timezone`` comes from ``start_date``; a ``CronDataIntervalTimetable("0 0 * * *",
    timezone="Europe/Paris")`` with a UTC start date cuts days at Paris midnight all the same.
    """
    timetable = dag.timetable
    # airflow.sdk's cron timetables expose ``timezone``; the core classes still imported by many
    # DAGs (airflow.timetables.interval) keep it in ``_timezone``.
    timezone = getattr(timetable, "timezone", None) or getattr(timetable, "_timezone", None)
    timezone = timezone or dag.timezone
    if isinstance(timezone, str):
        import pendulum

        return pendulum.timezone(timezone)
    return timezone  # type: ignore[no-any-return]


def parse_ids(name: str, value: object) -> tuple[int, ...] | None:
    """Ids from a list, or from the text a template renders: ``[416, 23]`` or ``416,23``."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "None", "null"):  # an unset template; "[]" stays an error
            return None
        if text.startswith("["):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                raise LuccaConfigError(
                    f"Invalid {name}={text!r}: expected a JSON list of ids like [416, 23]."
                ) from None
        else:
            parts = [part.strip() for part in text.split(",")]
            if not all(part.isascii() and part.isdigit() for part in parts):
                raise LuccaConfigError(
                    f"Invalid {name}={text!r}: expected ids like '416,23' or [416, 23]."
                )
            value = [int(part) for part in parts]
    return validate_ids(name, value)


def parse_bool(name: str, value: object) -> bool | None:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("", "none", "null"):
            return None
        if text in ("true", "false"):
            return text == "true"
        raise LuccaConfigError(f"Invalid {name}={value!r}: expected true, false or empty.")
    return validate_bool(name, value)


def _is_template(value: object) -> bool:
    """A value known only at run time: Jinja, or another task's output (an ``XComArg``, the
    argument of a mapped task group), resolved when the task renders its fields."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    return hasattr(value, "resolve") and hasattr(value, "iter_references")


def storage_url(output_path: object) -> str:
    """The ``ObjectStoragePath`` URL of ``output_path``; an absolute local path becomes file://."""
    if not isinstance(output_path, str) or not output_path.strip():
        raise LuccaConfigError(
            f"Invalid output_path={output_path!r}: expected a URL such as "
            "s3://aws_default@bucket/lucca/realized_trainings or file:///data/lucca."
        )
    text = output_path.strip().rstrip("/")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise LuccaConfigError(
            f"Invalid output_path={output_path!r}: it contains a control character."
        )
    if text.startswith("/"):
        return "file://" + text
    parts = urlsplit(text)
    if (
        not parts.scheme
        or (parts.scheme == "file" and not parts.path.startswith("/"))
        or (parts.scheme != "file" and not parts.hostname)
    ):
        raise LuccaConfigError(
            f"Invalid output_path={output_path!r}: expected a URL with a scheme (s3://, gs://, "
            "abfs://, file:///absolute/path) or an absolute local path."
        )
    return text


def asset_uri(output_path: str) -> str:
    """The dataset's Asset URI: the storage URL without the connection id (``s3://conn@b/k``)."""
    return _asset_uri_of(storage_url(output_path))


def refuse_other_layout(
    root: ObjectStoragePath, file_format: str, *, tenant: str | None = None
) -> None:
    """Refuse an ``output_path`` that holds the other layout, or lies inside a Delta table,
    before any request.

    Files and a Delta table use the same ``session_end_on=`` directories. Delta's ``vacuum``
    deletes every file its log does not list, and the files' sweep every file no manifest lists:
    pointed at each other's root by a typo, each would destroy the other's data. Tenants' files
    (``tenant=<name>/``) and one account's days never share a root either: the sweep of a
    single-account dataset would delete the tenants' directories.
    """
    for ancestor in root.parents:
        if (ancestor / "_delta_log").exists():
            raise LuccaConfigError(
                f"Invalid output_path={str(root)!r}: it is inside the Delta table "
                f"{str(ancestor)!r}, whose vacuum would delete it; give it a path of its own."
            )
    is_table = (root / "_delta_log").exists()
    if file_format == "delta" and not is_table and root.exists() and any(root.iterdir()):
        raise LuccaConfigError(
            f"Invalid output_path={str(root)!r} for file_format='delta': the directory is not "
            "empty and holds no Delta table (no _delta_log); give the table a path of its own."
        )
    if file_format != "delta" and is_table:
        raise LuccaConfigError(
            f"Invalid output_path={str(root)!r} for file_format={file_format!r}: it holds a "
            "Delta table (_delta_log); use file_format='delta' or another path."
        )
    if file_format != "delta" and root.exists():
        _refuse_mixed_tenancy(root, tenant)


def tenant_datasets(root: ObjectStoragePath) -> dict[str, ObjectStoragePath]:
    """The tenants' datasets under a files root, by tenant name (empty for one account's root).
    A root holding both layouts is refused: nothing can tell which files belong to which."""
    if not root.exists():
        return {}
    tenants = {
        entry.name.removeprefix(TENANT_DIR_PREFIX): entry
        for entry in root.iterdir()
        if entry.name.startswith(TENANT_DIR_PREFIX)
    }
    if tenants:
        _refuse_mixed_tenancy(root, next(iter(tenants)))
    return dict(sorted(tenants.items()))


def _refuse_mixed_tenancy(root: ObjectStoragePath, tenant: str | None) -> None:
    """Tenants' directories and single-account days are never mixed under one files root."""
    names = [entry.name for entry in root.iterdir()]
    if tenant is not None and any(name.startswith("session_end_on=") for name in names):
        raise LuccaConfigError(
            f"Invalid output_path={str(root)!r} for tenant={tenant!r}: it holds a single-account "
            "dataset (session_end_on= directories); give the tenants a path of their own."
        )
    if tenant is None and any(name.startswith(TENANT_DIR_PREFIX) for name in names):
        raise LuccaConfigError(
            f"Invalid output_path={str(root)!r}: it holds tenants' datasets (tenant= "
            "directories); set tenant, or give this account a path of its own."
        )


def _asset_uri_of(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))
