"""RealizedTrainingsOperator through Airflow: windows, validation, templating, XCom, S3."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, Asset
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_lucca.client import LuccaConfigError
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
from lucca_sandbox import SandboxServer
from tests.helpers import SANDBOX_KEY, read_dataset

USER_FACING_STRINGS = {
    "output_path",
    "lucca_conn_id",
    "session_end_from",
    "session_end_until",
    "owner_ids",
    "has_attended",
    "training_ids",
}


def make_dag(
    tz: str = "UTC", *, native: bool = False, start_tz: str | None = None, **params: Any
) -> DAG:
    return DAG(
        f"lucca_test_{tz.replace('/', '_').lower()}",
        schedule=CronDataIntervalTimetable("0 0 * * *", timezone=tz),
        start_date=pendulum.datetime(2025, 1, 1, tz=start_tz or tz),
        params=params,
        render_template_as_native_obj=native,
    )


def make_context(
    dag: DAG, start: str = "2025-03-10T00:00:00Z", end: str = "2025-03-11T00:00:00Z"
) -> dict[str, Any]:
    """What Airflow hands to ``execute`` (the parts this operator may read)."""
    interval_start, interval_end = pendulum.parse(start), pendulum.parse(end)
    return {
        "dag": dag,
        "params": dag.params,
        "run_id": f"scheduled__{start}",
        "data_interval_start": interval_start,
        "data_interval_end": interval_end,
        "logical_date": interval_start,
        "ds": interval_start.in_timezone("UTC").to_date_string(),
    }


def local_output(tmp_path: Path) -> str:
    return f"file://{tmp_path}/lucca/realized_trainings"


def records_of(sandbox: SandboxServer, *days: str, **filters: Any) -> dict[str, Any]:
    owners = filters.get("owner_ids")
    attended = filters.get("has_attended")
    result: dict[str, list[dict[str, Any]]] = {day: [] for day in days}
    for record in sandbox.records:
        if record["sessionEndsOn"] not in result:
            continue
        if owners is not None and record["ownerId"] not in owners:
            continue
        if attended is not None and record.get("hasAttended", True) is not attended:
            continue
        result[record["sessionEndsOn"]].append(record)
    return {day: sorted(records, key=lambda r: r["id"]) for day, records in result.items()}


# --------------------------------------------------------------------------- the run's window


@pytest.mark.parametrize(
    ("start", "end", "day"),
    [
        ("2025-03-09T23:00:00Z", "2025-03-10T23:00:00Z", "2025-03-10"),
        # The night Paris moves to summer time: a 23-hour day.
        ("2025-03-29T23:00:00Z", "2025-03-30T22:00:00Z", "2025-03-30"),
    ],
)
def test_paris_dag_extracts_its_local_day(
    lucca_conn: SandboxServer, tmp_path: Path, start: str, end: str, day: str
) -> None:
    dag = make_dag("Europe/Paris")
    with dag:
        op = RealizedTrainingsOperator(task_id="extract", output_path=local_output(tmp_path))
    context = make_context(dag, start, end)
    previous_utc_day = context["ds"]
    assert previous_utc_day < day
    want = records_of(lucca_conn, day)
    assert want[day]
    assert records_of(lucca_conn, previous_utc_day)[previous_utc_day]

    summary = op.execute(context)
    next_day = pendulum.parse(day).add(days=1).to_date_string()
    assert summary["window"] == {"from": day, "until": next_day}
    assert summary["partitions"] == {day: len(want[day])}
    assert read_dataset(tmp_path / "lucca/realized_trainings") == want
    manifest = json.loads(
        (tmp_path / "lucca/realized_trainings" / f"session_end_on={day}/_manifest.json").read_text()
    )
    assert manifest["run"]["run_id"] == context["run_id"]


def test_days_are_cut_in_the_timetables_timezone_even_with_a_utc_start_date(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag("Europe/Paris", start_tz="UTC")
    assert dag.timezone.name == "UTC"  # what Airflow derives from start_date
    with dag:
        op = RealizedTrainingsOperator(task_id="extract", output_path=local_output(tmp_path))

    summary = op.execute(make_context(dag, "2025-03-09T23:00:00Z", "2025-03-10T23:00:00Z"))

    assert summary["window"] == {"from": "2025-03-10", "until": "2025-03-11"}


def test_an_interval_that_does_not_start_at_midnight_is_refused(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag("Europe/Paris")
    op = RealizedTrainingsOperator(task_id="extract", output_path=local_output(tmp_path))
    context = make_context(dag, "2025-03-10T05:00:00Z", "2025-03-11T05:00:00Z")
    with pytest.raises(LuccaConfigError, match="midnight"):
        op.execute(context)
    assert lucca_conn.stats()["requests"] == 0


def test_a_template_rendering_an_empty_id_list_is_an_error_not_no_filter(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag()
    op = RealizedTrainingsOperator(
        task_id="extract", output_path=local_output(tmp_path), owner_ids="{{ params.ids }}"
    )
    op.owner_ids = "[]"  # what the template rendered
    with pytest.raises(LuccaConfigError, match="owner_ids"):
        op.execute(make_context(dag))
    assert lucca_conn.stats()["requests"] == 0


def test_zero_length_interval_is_refused_naming_the_timetable(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag()
    op = RealizedTrainingsOperator(task_id="extract", output_path=local_output(tmp_path))
    context = make_context(dag, "2025-03-10T00:00:00Z", "2025-03-10T00:00:00Z")
    with pytest.raises(LuccaConfigError, match="timetable"):
        op.execute(context)
    assert lucca_conn.stats()["requests"] == 0
    assert not (tmp_path / "lucca").exists()


@pytest.mark.parametrize(
    ("start", "until"), [("2025-03-10", "2025-03-10"), ("2025-03-11", "2025-03-10")]
)
def test_from_not_before_until_is_refused(start: str, until: str, tmp_path: Path) -> None:
    with pytest.raises(LuccaConfigError, match="session_end_from"):
        RealizedTrainingsOperator(
            task_id="extract",
            output_path=local_output(tmp_path),
            session_end_from=start,
            session_end_until=until,
        )


def test_explicit_window_overrides_the_data_interval(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        session_end_from="2025-03-03",
        session_end_until="2025-03-05",
        lookback_days=1,
    )
    summary = op.execute(make_context(make_dag()))
    assert summary["window"] == {"from": "2025-03-03", "until": "2025-03-05"}
    want = records_of(lucca_conn, "2025-03-02", "2025-03-03", "2025-03-04")
    assert read_dataset(tmp_path / "lucca/realized_trainings") == want


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("owner_ids", "416,abc"),
        ("owner_ids", "[416, true]"),
        ("owner_ids", [0]),
        ("owner_ids", [416, 2**31]),
        ("owner_ids", 4.5),
        ("training_ids", "x"),
        ("has_attended", "yes please"),
        ("has_attended", 1),
        ("session_end_from", "2025-02-30"),
        ("session_end_until", "10/03/2025"),
        ("lookback_days", -1),
        ("lookback_days", "3"),
        ("lookback_days", True),
        ("file_format", "csv"),
        ("max_rereads", -1),
        ("max_rereads", 6),
        ("max_rereads", "2"),
        ("lock_timeout", -1),
        ("lock_timeout", float("nan")),
        ("lock_timeout", 10**9),
        ("lock_lease", 1),
        ("lock_lease", "300"),
        ("output_path", "relative/lucca"),
        ("output_path", ""),
        ("output_path", "file://relative"),
    ],
)
def test_invalid_parameters_fail_at_construction_naming_them(
    name: str, value: Any, tmp_path: Path
) -> None:
    kwargs: dict[str, Any] = {"output_path": local_output(tmp_path)}
    if name == "session_end_from":
        kwargs["session_end_until"] = "2025-03-10"
    if name == "session_end_until":
        kwargs["session_end_from"] = "2025-03-10"
    kwargs[name] = value
    with pytest.raises(LuccaConfigError, match=rf"\b{name}\b"):
        RealizedTrainingsOperator(task_id="extract", **kwargs)


def test_one_bound_alone_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LuccaConfigError, match="session_end_until"):
        RealizedTrainingsOperator(
            task_id="extract", output_path=local_output(tmp_path), session_end_from="2025-03-10"
        )


@pytest.mark.parametrize(
    ("name", "rendered"),
    [
        ("output_path", "relative/lucca"),
        ("owner_ids", "416,abc"),
        ("owner_ids", "[416, 0]"),
        ("training_ids", "[1.5]"),
        ("has_attended", "maybe"),
        ("session_end_from", "2025-02-30"),
        ("session_end_until", "tomorrow"),
    ],
)
def test_templated_values_are_checked_after_rendering_before_any_request(
    lucca_conn: SandboxServer, tmp_path: Path, name: str, rendered: str
) -> None:
    good = {
        "output_path": local_output(tmp_path),
        "owner_ids": "416",
        "training_ids": "45",
        "has_attended": "true",
        "session_end_from": "2025-03-10",
        "session_end_until": "2025-03-11",
    }
    params = {**good, name: rendered}
    dag = make_dag(**params)
    with dag:
        op = RealizedTrainingsOperator(
            task_id="extract", **{key: f"{{{{ params.{key} }}}}" for key in good}
        )
    context = make_context(dag)
    op.render_template_fields(context)
    assert getattr(op, name) == rendered
    with pytest.raises(LuccaConfigError, match=rf"\b{name}\b"):
        op.execute(context)
    assert lucca_conn.stats()["requests"] == 0


def test_templated_window_rendering_to_an_empty_window_fails_before_any_request(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag(first="2025-03-11", last="2025-03-10")
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        session_end_from="{{ params.first }}",
        session_end_until="{{ params.last }}",
    )
    context = make_context(dag)
    op.render_template_fields(context)
    with pytest.raises(LuccaConfigError, match="session_end_from"):
        op.execute(context)
    assert lucca_conn.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("owners_text", "native"),
    [("{a},{b}", False), ("[{a}, {b}]", False), ("[{a}, {b}]", True)],
)
def test_templated_string_forms_are_understood(
    lucca_conn: SandboxServer, tmp_path: Path, owners_text: str, native: bool
) -> None:
    day = "2025-03-10"
    in_day = [r for r in lucca_conn.records if r["sessionEndsOn"] == day]
    owners = sorted({r["ownerId"] for r in in_day})[:2]
    assert len(owners) == 2
    dag = make_dag(
        native=native,
        owners=owners_text.format(a=owners[0], b=owners[1]),
        attended="true",
        out=local_output(tmp_path),
        first="",
        last="",
    )
    with dag:
        op = RealizedTrainingsOperator(
            task_id="extract",
            output_path="{{ params.out }}",
            owner_ids="{{ params.owners }}",
            has_attended="{{ params.attended }}",
            # Optional bounds left empty: the run's data interval applies.
            session_end_from="{{ params.first }}",
            session_end_until="{{ params.last }}",
        )
    context = make_context(dag)
    op.render_template_fields(context)
    summary = op.execute(context)
    want = records_of(lucca_conn, day, owner_ids=owners, has_attended=True)
    assert want[day]
    assert read_dataset(tmp_path / "lucca/realized_trainings") == want
    assert summary["records"] == len(want[day])
    manifest = json.loads(
        (tmp_path / "lucca/realized_trainings" / f"session_end_on={day}/_manifest.json").read_text()
    )
    assert manifest["filters"] == {"owner_ids": owners, "has_attended": True, "training_ids": None}


def test_template_fields_cover_every_user_facing_string(tmp_path: Path) -> None:
    assert set(RealizedTrainingsOperator.template_fields) >= USER_FACING_STRINGS
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path="{{ params.out }}",
        lucca_conn_id="{{ params.conn }}",
        session_end_from="{{ params.first }}",
        session_end_until="{{ params.last }}",
        owner_ids="{{ params.owners }}",
        has_attended="{{ params.attended }}",
        training_ids="{{ params.trainings }}",
    )
    for name in USER_FACING_STRINGS:
        assert getattr(op, name).startswith("{{ params.")


# --------------------------------------------------------------------------- XCom and Asset


def test_return_value_is_a_small_json_summary_without_records(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        session_end_from="2025-03-01",
        session_end_until="2025-04-01",
    )
    summary = op.execute(make_context(make_dag()))
    text = json.dumps(summary)
    written = sum(
        len(records) for records in read_dataset(tmp_path / "lucca/realized_trainings").values()
    )
    assert written > 100
    assert summary["records"] == written
    assert len(text) < 4000
    record = lucca_conn.records[0]
    assert record["training"]["title"] not in text
    assert "items" not in summary
    assert SANDBOX_KEY not in text

    def no_record_lists(value: Any) -> None:
        if isinstance(value, list):
            assert not any(isinstance(item, dict) for item in value)
        if isinstance(value, dict):
            assert "sessionEndsOn" not in value
            for item in value.values():
                no_record_lists(item)

    no_record_lists(summary)


@pytest.mark.parametrize(
    ("output_path", "uri"),
    [
        ("s3://aws_local@lake/lucca/realized_trainings", "s3://lake/lucca/realized_trainings"),
        ("s3://lake/lucca/realized_trainings/", "s3://lake/lucca/realized_trainings"),
        ("/data/lucca/realized_trainings", "file:///data/lucca/realized_trainings"),
    ],
)
def test_asset_outlet_is_the_output_location_without_connection(output_path: str, uri: str) -> None:
    op = RealizedTrainingsOperator(task_id="extract", output_path=output_path)
    assert op.outlets == [Asset(uri)]
    assert "aws_local" not in op.outlets[0].uri


# --------------------------------------------------------------------------- S3 (moto)


@pytest.mark.slow
def test_extracts_to_s3_through_an_airflow_connection(
    lucca_conn: SandboxServer, s3_bucket: str, moto_s3: str
) -> None:
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=moto_s3,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    prefix = "lucca/realized_trainings/"
    days = ["2025-03-10", "2025-03-11", "2025-03-12"]

    def read_s3() -> tuple[dict[str, list[dict[str, Any]]], set[str]]:
        listing = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix)
        keys = {item["Key"] for item in listing.get("Contents", [])}
        data: dict[str, list[dict[str, Any]]] = {}
        for key in sorted(k for k in keys if k.endswith("/_manifest.json")):
            manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read())
            directory = key.rsplit("/", 1)[0]
            records: list[dict[str, Any]] = []
            for entry in manifest["files"]:
                body = s3.get_object(Bucket=s3_bucket, Key=f"{directory}/{entry['name']}")
                raw = body["Body"].read()
                assert hashlib.sha256(raw).hexdigest() == entry["sha256"]
                records.extend(json.loads(line) for line in gzip.decompress(raw).splitlines())
            day = directory.rsplit("=", 1)[1]
            data[day] = sorted(records, key=lambda r: r["id"])
            assert manifest["record_count"] == len(records)
        return data, keys

    output_path = f"s3://aws_local@{s3_bucket}/lucca/realized_trainings"
    dag = make_dag()
    with dag:
        op = RealizedTrainingsOperator(task_id="extract", output_path=output_path)
    assert op.outlets == [Asset(f"s3://{s3_bucket}/lucca/realized_trainings")]
    context = make_context(dag, "2025-03-10T00:00:00Z", "2025-03-13T00:00:00Z")
    first = op.execute(context)
    data, keys = read_s3()
    assert data == records_of(lucca_conn, *days)
    assert {key.split("/")[2] for key in keys} == {f"session_end_on={day}" for day in days}
    assert first["partitions"] == {day: len(data[day]) for day in days}

    removed = data["2025-03-11"][0]["id"]
    lucca_conn.configure(delete_ids=[removed])
    second = op.execute(context)
    data, keys = read_s3()
    assert data == records_of(lucca_conn, *days)
    assert removed not in {r["id"] for r in data["2025-03-11"]}
    parts = {key for key in keys if not key.endswith("/_manifest.json")}
    assert parts
    assert all(second["run_token"] in key for key in parts), parts


def test_the_http_session_is_closed_after_the_task(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        session_end_from="2025-03-01",
        session_end_until="2025-03-02",
    )
    op.execute(make_context(make_dag()))
    assert "client" not in op.hook.__dict__  # workers run many tasks: no session left open


# --------------------------------------------------------------------------- window bounds
#
# A date like 0001-01-01 or a lookback of a million days used to raise OverflowError in execute,
# and a typo window of a century (1925 for 2025) wrote 36,525 empty partitions without a word.


@pytest.mark.parametrize(
    ("bounds", "fragments"),
    [
        (
            ("0001-01-01", "2025-03-10"),
            ["session_end_from=0001-01-01", "a date from 1900-01-01 to 2199-12-31"],
        ),
        (
            ("1899-12-31", "1900-01-02"),
            ["session_end_from=1899-12-31", "a date from 1900-01-01 to 2199-12-31"],
        ),
        (
            ("2025-03-10", "9999-12-31"),
            ["session_end_until=9999-12-31", "a date from 1900-01-02 to 2200-01-01"],
        ),
    ],
)
def test_dates_outside_the_supported_range_fail_when_the_dag_is_parsed(
    tmp_path: Path, bounds: tuple[str, str], fragments: list[str]
) -> None:
    with pytest.raises(LuccaConfigError) as info:
        RealizedTrainingsOperator(
            task_id="extract",
            output_path=local_output(tmp_path),
            session_end_from=bounds[0],
            session_end_until=bounds[1],
        )
    for fragment in fragments:
        assert fragment in str(info.value)


def test_a_rendered_date_outside_the_range_fails_before_any_request(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag(first="0001-01-01", last="2025-03-10")
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        session_end_from="{{ params.first }}",
        session_end_until="{{ params.last }}",
    )
    context = make_context(dag)
    op.render_template_fields(context)
    with pytest.raises(LuccaConfigError) as info:
        op.execute(context)
    assert "session_end_from=0001-01-01" in str(info.value)
    assert "a date from 1900-01-01 to 2199-12-31" in str(info.value)
    assert lucca_conn.stats()["requests"] == 0
    assert not (tmp_path / "lucca").exists()


@pytest.mark.parametrize("lookback", [3661, 10**6, 10**10])
def test_an_absurd_lookback_fails_when_the_dag_is_parsed(tmp_path: Path, lookback: int) -> None:
    with pytest.raises(LuccaConfigError) as info:
        RealizedTrainingsOperator(
            task_id="extract", output_path=local_output(tmp_path), lookback_days=lookback
        )
    message = str(info.value)
    assert f"Invalid lookback_days={lookback}" in message
    assert "an integer from 0 to 3660" in message


def test_a_lookback_reaching_before_1900_fails_naming_lookback_days(tmp_path: Path) -> None:
    with pytest.raises(LuccaConfigError) as info:
        RealizedTrainingsOperator(
            task_id="extract",
            output_path=local_output(tmp_path),
            session_end_from="1905-01-01",
            session_end_until="1905-01-02",
            lookback_days=3000,
            max_window_days=5000,
        )
    message = str(info.value)
    assert "lookback_days=3000" in message
    assert "before 1900-01-01" in message
    assert "at most 1826" in message


def test_a_century_window_fails_when_the_dag_is_parsed_naming_max_window_days(
    tmp_path: Path,
) -> None:
    from datetime import date

    days = (date(2025, 1, 2) - date(1925, 1, 1)).days
    window = {"session_end_from": "1925-01-01", "session_end_until": "2025-01-02"}
    with pytest.raises(LuccaConfigError) as info:
        RealizedTrainingsOperator(task_id="extract", output_path=local_output(tmp_path), **window)
    message = str(info.value)
    assert f"spans {days:,} days" in message
    assert "more than max_window_days=3660" in message
    assert "typo" in message
    assert f"pass max_window_days={days} (or more)" in message
    # Raised on purpose, the same window is accepted.
    op = RealizedTrainingsOperator(
        task_id="extract", output_path=local_output(tmp_path), max_window_days=days, **window
    )
    assert op.max_window_days == days


def test_the_lookback_counts_in_max_window_days(tmp_path: Path) -> None:
    window = {"session_end_from": "2025-03-01", "session_end_until": "2025-03-02"}
    with pytest.raises(LuccaConfigError) as info:
        RealizedTrainingsOperator(
            task_id="extract", output_path=local_output(tmp_path), lookback_days=3660, **window
        )
    message = str(info.value)
    assert "with lookback_days=3660" in message
    assert "spans 3,661 days" in message
    assert "max_window_days=3660" in message
    RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        lookback_days=3660,
        max_window_days=3661,
        **window,
    )


def test_a_rendered_century_window_fails_before_any_request(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag(first="1925-03-10", last="2025-03-11")
    op = RealizedTrainingsOperator(
        task_id="extract",
        output_path=local_output(tmp_path),
        session_end_from="{{ params.first }}",
        session_end_until="{{ params.last }}",
    )
    context = make_context(dag)
    op.render_template_fields(context)
    with pytest.raises(LuccaConfigError, match="max_window_days=3660"):
        op.execute(context)
    assert lucca_conn.stats()["requests"] == 0
    assert not (tmp_path / "lucca").exists()


def test_a_data_interval_longer_than_max_window_days_fails_before_any_request(
    lucca_conn: SandboxServer, tmp_path: Path
) -> None:
    dag = make_dag()
    op = RealizedTrainingsOperator(task_id="extract", output_path=local_output(tmp_path))
    context = make_context(dag, "1925-01-01T00:00:00Z", "2025-01-01T00:00:00Z")
    with pytest.raises(LuccaConfigError, match="max_window_days=3660"):
        op.execute(context)
    assert lucca_conn.stats()["requests"] == 0
    assert not (tmp_path / "lucca").exists()


@pytest.mark.parametrize("value", [0, -1, 10**9, "3660", True, 3660.0])
def test_an_invalid_max_window_days_fails_when_the_dag_is_parsed(
    tmp_path: Path, value: object
) -> None:
    with pytest.raises(LuccaConfigError) as info:
        RealizedTrainingsOperator(
            task_id="extract", output_path=local_output(tmp_path), max_window_days=value
        )
    message = str(info.value)
    assert f"Invalid max_window_days={value!r}" in message
    assert "an integer from 1 to 109573" in message


def test_date_windows_never_raise_overflow_error() -> None:
    """Whatever the dates and the lookback, a typed error or a window: never OverflowError."""
    from datetime import date, timedelta

    from airflow_provider_lucca.extraction.window import DateWindow

    earliest, end_limit = date(1900, 1, 1), date(2200, 1, 1)
    days = [
        date.min,
        date(1899, 12, 31),
        earliest,
        date(1900, 1, 2),
        date(2025, 3, 10),
        date(2199, 12, 31),
        end_limit,
        date(2200, 1, 2),
        date.max,
    ]
    lookbacks = [-(10**10), -1, 0, 1, 3660, 3661, 10**6, 10**10, 10**100]
    for start in days:
        for end in days:
            if not earliest <= start < end <= end_limit:
                with pytest.raises(LuccaConfigError, match=r"session_end_(from|until)"):
                    DateWindow(start, end)
                continue
            window = DateWindow(start, end)
            assert window.request_bounds == (start - timedelta(days=1), end)
            for lookback in lookbacks:
                if 0 <= lookback <= min(3660, (start - earliest).days):
                    extended = window.with_lookback(lookback)
                    assert (extended.start, extended.end) == (start - timedelta(lookback), end)
                    assert extended.request_bounds[0] >= date(1899, 12, 31)
                else:
                    with pytest.raises(LuccaConfigError, match="lookback_days"):
                        window.with_lookback(lookback)
