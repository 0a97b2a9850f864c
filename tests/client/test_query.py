"""Query parameters: serialized as the spec says, validated before any request."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_lucca.client import LuccaConfigError
from airflow_provider_lucca.client.query import INT32_MAX, realized_trainings_params, validate_date
from tests.client.conftest import URL, make_client, page_body, query_of


def test_filters_are_serialized_as_the_spec_says(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body(count=0))
    client = make_client()

    list(
        client.iter_realized_trainings(
            owner_ids=[416, 23],
            has_attended=True,
            session_end_on_after=date(2025, 1, 1),
            session_end_on_before="2025-01-31",
            training_ids=(7, 8),
        )
    )

    url = rsps.calls[0].request.url
    assert url.startswith(URL + "?")
    raw = urlsplit(url).query
    # form, explode=true: one key per value, never a comma list
    assert "ownerIds=416&ownerIds=23" in raw
    assert "trainingId=7&trainingId=8" in raw
    assert "hasAttended=true" in raw
    assert "sessionEndOnAfter=2025-01-01" in raw
    assert "sessionEndOnBefore=2025-01-31" in raw
    ids_part = raw.replace("fields.root=next%2Ccount", "")
    assert "%2C" not in ids_part
    assert "," not in ids_part


def test_false_and_single_ids_serialize(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    list(make_client().iter_realized_trainings(has_attended=False, owner_ids=416, training_ids=[9]))
    query = query_of(rsps.calls[0])
    assert ("hasAttended", "false") in query
    assert [v for k, v in query if k == "ownerIds"] == ["416"]
    assert [v for k, v in query if k == "trainingId"] == ["9"]


def test_no_filter_sends_only_paging_parameters(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    list(make_client(page_size=40).iter_realized_trainings())
    assert sorted(query_of(rsps.calls[0])) == [("fields.root", "next,count"), ("limit", "40")]


@given(st.lists(st.integers(min_value=1, max_value=INT32_MAX), min_size=1, max_size=6))
@settings(max_examples=60, deadline=None)
def test_any_valid_id_list_serializes_in_order_without_duplicates(ids: list[int]) -> None:
    params = realized_trainings_params(owner_ids=ids, training_ids=ids)
    expected = [str(i) for i in dict.fromkeys(ids)]
    assert [v for k, v in params if k == "ownerIds"] == expected
    assert [v for k, v in params if k == "trainingId"] == expected


@given(st.dates())
@settings(max_examples=60, deadline=None)
def test_any_calendar_date_round_trips_through_its_iso_string(day: date) -> None:
    assert validate_date("session_end_on_after", day.isoformat()) == day
    params = realized_trainings_params(session_end_on_before=day)
    assert params == [("sessionEndOnBefore", day.isoformat())]


@pytest.mark.parametrize(
    ("kwargs", "name", "expected"),
    [
        ({"owner_ids": 0}, "owner_ids", "positive integer"),
        ({"owner_ids": -1}, "owner_ids", "positive integer"),
        ({"owner_ids": True}, "owner_ids", "positive integer"),
        ({"owner_ids": "416"}, "owner_ids", "list of positive integer ids"),
        ({"owner_ids": "alice"}, "owner_ids", "list of positive integer ids"),
        ({"owner_ids": [416, "23"]}, "owner_ids", "positive integer"),
        ({"owner_ids": [416, False]}, "owner_ids", "positive integer"),
        ({"owner_ids": 416.0}, "owner_ids", "list of positive integer ids"),
        ({"owner_ids": []}, "owner_ids", "non-empty"),
        ({"training_ids": 0}, "training_ids", "positive integer"),
        ({"training_ids": -1}, "training_ids", "positive integer"),
        ({"training_ids": [True]}, "training_ids", "positive integer"),
        ({"training_ids": "12"}, "training_ids", "list of positive integer ids"),
        ({"training_ids": [INT32_MAX + 1]}, "training_ids", f"1..{INT32_MAX}"),
        ({"session_end_on_after": "2025-02-30"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_after": "2025/01/01"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_after": "20250101"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_after": "2025-W01-1"}, "session_end_on_after", "YYYY-MM-DD"),
        ({"session_end_on_before": " 2025-01-1"}, "session_end_on_before", "YYYY-MM-DD"),
        (
            {"session_end_on_before": datetime(2025, 1, 1, tzinfo=timezone.utc)},
            "session_end_on_before",
            "not a datetime",
        ),
        ({"session_end_on_before": datetime(2025, 1, 1)}, "session_end_on_before", "datetime"),
        ({"session_end_on_before": 20250101}, "session_end_on_before", "YYYY-MM-DD"),
        ({"has_attended": "yes"}, "has_attended", "True, False or None"),
        ({"has_attended": "true"}, "has_attended", "True, False or None"),
        ({"has_attended": 1}, "has_attended", "True, False or None"),
    ],
)
def test_bad_filter_raises_before_any_request(
    rsps: responses.RequestsMock, kwargs: dict[str, Any], name: str, expected: str
) -> None:
    rsps.get(URL, json=page_body())
    client = make_client()
    # iter_realized_trainings validates eagerly: the call itself raises, before iteration.
    with pytest.raises(LuccaConfigError) as info:
        client.iter_realized_trainings(**kwargs)
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert f"Invalid {name}=" in message
    assert expected in message
    assert len(rsps.calls) == 0
