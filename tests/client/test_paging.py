"""Cursor paging: parameters, cursors, the guards against endless paging, broken pages.

The guards are tested on their own (PagingGuard, no HTTP) and through the client.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
import responses

from airflow_provider_lucca.client import REALIZED_TRAININGS_PATH, LuccaResponseError
from airflow_provider_lucca.client.paging import MAX_EMPTY_PAGES, PagingGuard
from tests.client.conftest import URL, FakeClock, make_client, page_body, query_of


@pytest.mark.parametrize("page_size", [1, 100])
def test_page_size_bounds_are_accepted_and_sent_as_limit(
    rsps: responses.RequestsMock, page_size: int
) -> None:
    rsps.get(URL, json=page_body())
    list(make_client(page_size=page_size).iter_realized_trainings())
    assert ("limit", str(page_size)) in query_of(rsps.calls[0])


def test_pagination_follows_opaque_cursors_on_the_same_host(rsps: responses.RequestsMock) -> None:
    cursors = ["!SGlnaA|A1kVrwDKrz|th", "https://evil.example/x?a=1&b=2"]
    rsps.get(URL, json=page_body([{"id": 1}, {"id": 2}], nxt=cursors[0], count=5))
    rsps.get(URL, json=page_body([{"id": 3}, {"id": 4}], nxt=cursors[1], count=5))
    rsps.get(URL, json=page_body([{"id": 5}], nxt=None, count=5))
    evil = rsps.get("https://evil.example/x", json=page_body())
    client = make_client(page_size=2)

    pages = list(client.iter_realized_trainings(owner_ids=[416, 23]))

    assert [p.number for p in pages] == [1, 2, 3]
    assert [item["id"] for p in pages for item in p.items] == [1, 2, 3, 4, 5]
    assert [p.count for p in pages] == [5, 5, 5]
    assert [p.next_cursor for p in pages] == [*cursors, None]
    assert len(rsps.calls) == 3
    assert evil.call_count == 0
    sent_pages: list[str | None] = []
    for call in rsps.calls:
        parts = urlsplit(call.request.url)
        assert f"{parts.scheme}://{parts.netloc}{parts.path}" == URL
        query = query_of(call)
        assert query.count(("fields.root", "next,count")) == 1
        assert query.count(("limit", "2")) == 1
        # filters are repeated on every page
        assert [v for k, v in query if k == "ownerIds"] == ["416", "23"]
        page_values = [v for k, v in query if k == "page"]
        assert len(page_values) <= 1
        sent_pages.append(page_values[0] if page_values else None)
    assert sent_pages == [None, *cursors]


def test_pages_are_streamed_one_request_at_a_time(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json=page_body([{"id": 2}]))
    pages = make_client().iter_realized_trainings()
    assert len(rsps.calls) == 0
    first = next(pages)
    assert first.items == [{"id": 1}]
    assert len(rsps.calls) == 1
    assert [p.items for p in pages] == [[{"id": 2}]]
    assert len(rsps.calls) == 2


@pytest.mark.parametrize("body", [{"items": [{"id": 1}], "next": None}, {"items": [{"id": 1}]}])
def test_pagination_stops_on_null_or_absent_next(
    rsps: responses.RequestsMock, body: dict[str, Any]
) -> None:
    rsps.get(URL, json=body)
    rsps.get(URL, json=page_body([{"id": 99}]))
    pages = list(make_client().iter_realized_trainings())
    assert len(pages) == 1
    assert pages[0].count is None
    assert len(rsps.calls) == 1


def test_empty_listing_is_one_request_and_one_empty_page(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([], count=0))
    pages = list(make_client().iter_realized_trainings())
    assert [(p.items, p.count) for p in pages] == [([], 0)]
    assert len(rsps.calls) == 1


def test_caller_paging_parameters_are_replaced(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body())
    params = [("limit", "5"), ("page", "3"), ("fields.root", "items"), ("ownerIds", "1")]
    list(make_client(page_size=7).paginate(REALIZED_TRAININGS_PATH, params))
    assert sorted(query_of(rsps.calls[0])) == [
        ("fields.root", "next,count"),
        ("limit", "7"),
        ("ownerIds", "1"),
    ]


def test_empty_pages_that_keep_pointing_further_stop_the_paging(
    rsps: responses.RequestsMock,
) -> None:
    for number in range(10):
        rsps.get(URL, json=page_body([], nxt=f"cursor-{number}", count=0))

    with pytest.raises(LuccaResponseError, match="3 empty pages in a row"):
        list(make_client().iter_realized_trainings())

    assert len(rsps.calls) == 3


def test_a_page_beyond_the_count_stops_the_paging(rsps: responses.RequestsMock) -> None:
    for number in range(10):
        rsps.get(URL, json=page_body([{"id": number}], nxt=f"cursor-{number}", count=2))

    with pytest.raises(LuccaResponseError, match="4 items received by page 4, more than a page"):
        list(make_client(page_size=1).iter_realized_trainings())

    assert len(rsps.calls) == 4


def test_repeated_cursor_fails_instead_of_looping(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="A"))
    rsps.get(URL, json=page_body([{"id": 2}], nxt="B"))
    rsps.get(URL, json=page_body([{"id": 3}], nxt="A"))
    rsps.get(URL, json=page_body([{"id": 4}]))

    received: list[int] = []

    def consume() -> None:
        for page in make_client().iter_realized_trainings():
            received.extend(item["id"] for item in page.items)

    with pytest.raises(LuccaResponseError, match="cursor already followed"):
        consume()

    assert len(rsps.calls) == 3
    # The page carrying the repeated cursor is never handed to the caller.
    assert received == [1, 2]


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("too many items", {"json": page_body([{"id": i} for i in range(3)])}, "3 items for limit=2"),
    ("items missing", {"json": {"next": None}}, "'items' is missing"),
    ("items null", {"json": {"items": None}}, "'items' is missing"),
    ("items an object", {"json": {"items": {"id": 1}}}, "'items' is dict"),
    ("items a string", {"json": {"items": "[]"}}, "'items' is str"),
    ("item a number", {"json": page_body([{"id": 1}, 2])}, "item 1 is int"),
    ("item null", {"json": page_body([None])}, "item 0 is NoneType"),
    ("item a list", {"json": page_body([[1]])}, "item 0 is list"),
    ("next a number", {"json": page_body(nxt=5)}, "'next' is 5"),
    ("next empty", {"json": page_body(nxt="")}, "'next' is ''"),
    ("next an object", {"json": page_body(nxt={"page": 2})}, "'next' is"),
    ("count negative", {"json": page_body(count=-1)}, "'count' is -1"),
    ("count bool", {"json": page_body(count=True)}, "'count' is True"),
    ("count string", {"json": page_body(count="3")}, "'count' is '3'"),
    ("count float", {"json": page_body(count=2.5)}, "'count' is 2.5"),
    ("not JSON", {"body": "this is not json"}, "not JSON"),
    ("empty body", {"body": ""}, "not JSON"),
    (
        "HTML",
        {"body": "<!doctype html><html>Login</html>", "content_type": "text/html"},
        "'text/html'",
    ),
    ("JSON NaN", {"body": '{"items": [], "count": NaN}'}, "not JSON"),
    ("JSON array", {"json": [{"id": 1}]}, "expected a JSON object, got list"),
    ("JSON string", {"json": "items"}, "expected a JSON object, got str"),
    ("JSON null", {"body": "null"}, "expected a JSON object, got NoneType"),
]


@pytest.mark.parametrize(("case", "answer", "fragment"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
def test_contract_breaking_answer_fails_without_retry(
    rsps: responses.RequestsMock, case: str, answer: dict[str, Any], fragment: str
) -> None:
    rsps.get(URL, **answer)
    rsps.get(URL, json=page_body([{"id": 1}]))  # would be served if the client wrongly retried
    clock = FakeClock()

    with pytest.raises(LuccaResponseError) as info:
        list(make_client(clock, page_size=2).iter_realized_trainings())

    assert fragment in str(info.value)
    assert REALIZED_TRAININGS_PATH in str(info.value)
    assert len(rsps.calls) == 1
    assert clock.sleeps == []


def test_bad_second_page_fails_after_the_first(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json=page_body([{"id": 1}], nxt="c1"))
    rsps.get(URL, json={"items": "broken"})
    pages = make_client().iter_realized_trainings()
    assert next(pages).items == [{"id": 1}]
    with pytest.raises(LuccaResponseError, match="page 2"):
        next(pages)


def test_unexpected_shapes_inside_a_record_are_passed_through(rsps: responses.RequestsMock) -> None:
    record = {
        "id": 1,
        "training": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "durationInHours": 1.25,
        "sessionId": None,
    }
    rsps.get(URL, json=page_body([record, {"id": 2}]))
    pages = list(make_client().iter_realized_trainings())
    assert pages[0].items == [record, {"id": 2}]


def test_check_is_one_cheap_request_returning_the_count(rsps: responses.RequestsMock) -> None:
    rsps.get(URL, json={"items": [{"id": 1}], "count": 1234})
    assert make_client().check() == 1234
    assert len(rsps.calls) == 1
    assert sorted(query_of(rsps.calls[0])) == [("fields.root", "count"), ("limit", "1")]


# -- PagingGuard on its own ------------------------------------------------------------------------

PATH = REALIZED_TRAININGS_PATH


def test_the_guard_numbers_pages_and_counts_items() -> None:
    guard = PagingGuard(PATH, limit=2)
    first = guard.accept(page_body([{"id": 1}, {"id": 2}], nxt="A", count=3))
    second = guard.accept(page_body([{"id": 3}], count=3))
    assert (first.number, first.next_cursor, first.count) == (1, "A", 3)
    assert (second.number, second.next_cursor, second.items) == (2, None, [{"id": 3}])
    assert guard.received == 3


def test_the_guard_refuses_a_cursor_already_followed() -> None:
    guard = PagingGuard(PATH, limit=10)
    guard.accept(page_body([{"id": 1}], nxt="A"))
    guard.accept(page_body([{"id": 2}], nxt="B"))
    with pytest.raises(LuccaResponseError) as info:
        guard.accept(page_body([{"id": 3}], nxt="A"))
    assert str(info.value) == (
        f"GET {PATH}: page 3 returned a cursor already followed ('A'); stopping instead of "
        "looping forever."
    )


def test_the_guard_allows_empty_pages_up_to_its_limit_then_stops() -> None:
    guard = PagingGuard(PATH, limit=10)
    for number in range(MAX_EMPTY_PAGES - 1):
        guard.accept(page_body([], nxt=f"c{number}"))
    guard.accept(page_body([{"id": 1}], nxt="reset"))  # a page with items resets the run
    for number in range(MAX_EMPTY_PAGES - 1):
        guard.accept(page_body([], nxt=f"d{number}"))
    with pytest.raises(LuccaResponseError) as info:
        guard.accept(page_body([], nxt="one-too-many"))
    assert str(info.value) == (
        f"GET {PATH}: {MAX_EMPTY_PAGES} empty pages in a row that still point to a next one; "
        "stopping instead of paging forever."
    )


def test_empty_pages_that_end_the_listing_are_no_loop() -> None:
    guard = PagingGuard(PATH, limit=10)
    for number in range(MAX_EMPTY_PAGES - 1):
        guard.accept(page_body([], nxt=f"c{number}"))
    assert guard.accept(page_body([])).next_cursor is None


def test_the_guard_allows_one_page_beyond_the_count_and_no_more() -> None:
    guard = PagingGuard(PATH, limit=2)
    guard.accept(page_body([{"id": 1}, {"id": 2}], nxt="A", count=1))
    guard.accept(page_body([{"id": 3}], nxt="B", count=1))  # 3 = count + limit: still accepted
    with pytest.raises(LuccaResponseError) as info:
        guard.accept(page_body([{"id": 4}], nxt="C", count=1))
    assert str(info.value) == (
        f"GET {PATH}: 4 items received by page 3, more than a page beyond the count=1 the "
        "server reports; stopping."
    )
