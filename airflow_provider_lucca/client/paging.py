"""Cursor paging, checked: each page's shape, and the guards that stop a listing paging forever.

No I/O here: :meth:`LuccaClient.paginate <airflow_provider_lucca.client.LuccaClient.paginate>`
sends the requests and hands each decoded body to a :class:`PagingGuard`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from airflow_provider_lucca.client.errors import LuccaResponseError

JsonObject = dict[str, Any]

#: Empty pages that still carry a ``next`` cursor before paging is declared stuck.
MAX_EMPTY_PAGES = 3


@dataclass(frozen=True)
class Page:
    """One page of a listing, exactly as the API sent its items.

    :param count: the total the server reports for the whole request (all pages), when asked.
    """

    number: int
    items: list[JsonObject]
    next_cursor: str | None
    count: int | None


def parse_page(body: JsonObject, *, number: int, limit: int, path: str) -> Page:
    """The page in ``body``, or :class:`LuccaResponseError` if it breaks the listing's contract.

    ``items`` must be a list of at most ``limit`` objects, ``next`` a non-empty string or null,
    ``count`` an integer >= 0 or absent.
    """
    where = f"GET {path} page {number}"
    items = body.get("items")
    if not isinstance(items, list):
        raise LuccaResponseError(
            f"{where}: 'items' is {'missing' if items is None else type(items).__name__}, "
            "expected a list of records."
        )
    if len(items) > limit:
        raise LuccaResponseError(f"{where}: {len(items)} items for limit={limit}.")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise LuccaResponseError(
                f"{where}: item {index} is {type(item).__name__}, expected an object."
            )
    next_cursor = body.get("next")
    if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
        raise LuccaResponseError(
            f"{where}: 'next' is {next_cursor!r}, expected a cursor string or null."
        )
    count = body.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise LuccaResponseError(f"{where}: 'count' is {count!r}, expected an integer >= 0.")
    return Page(number=number, items=items, next_cursor=next_cursor, count=count)


@dataclass
class PagingGuard:
    """Numbers, parses and checks the pages of one listing, in the order they arrive.

    A repeated cursor, more than a page of items beyond the reported count, or a run of
    :data:`MAX_EMPTY_PAGES` empty pages that still point further are server bugs that would
    otherwise page forever: each raises :class:`LuccaResponseError`. (A few repeated items are the
    caller's to judge against the count.)

    :param path: the request path, for messages.
    :param limit: the page size asked for.
    """

    path: str
    limit: int
    pages: int = 0
    received: int = 0
    empty_in_a_row: int = 0
    cursors: set[str] = field(default_factory=set)

    def accept(self, body: JsonObject) -> Page:
        """The next page, from its decoded body; raises if it breaks the contract or the guards."""
        self.pages += 1
        number, path = self.pages, self.path
        page = parse_page(body, number=number, limit=self.limit, path=path)
        if page.next_cursor is not None and page.next_cursor in self.cursors:
            raise LuccaResponseError(
                f"GET {path}: page {number} returned a cursor already followed "
                f"({page.next_cursor[:40]!r}); stopping instead of looping forever."
            )
        self.received += len(page.items)
        self.empty_in_a_row = 0 if page.items else self.empty_in_a_row + 1
        if page.count is not None and self.received > page.count + self.limit:
            raise LuccaResponseError(
                f"GET {path}: {self.received} items received by page {number}, more than a page "
                f"beyond the count={page.count} the server reports; stopping."
            )
        if page.next_cursor is not None and self.empty_in_a_row >= MAX_EMPTY_PAGES:
            raise LuccaResponseError(
                f"GET {path}: {self.empty_in_a_row} empty pages in a row that still point to a "
                "next one; stopping instead of paging forever."
            )
        if page.next_cursor is not None:
            self.cursors.add(page.next_cursor)
        return page
