"""Cursor paging, checked: each page's shape, and the guards that stop a listing paging forever.

No I/O here: :meth:`LuccaClient.paginate <airflow_provider_lucca.client.LuccaClient.paginate>`
sends the requests and hands each decoded body to a :class:`PagingGuard`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_lucca.client.errors import LuccaResponseError

JsonObject = dict[str, Any]

#: Empty pages that still carry a ``next`` cursor before paging is declared stuck.
MAX_EMPTY_PAGES = 3


class RawItems(list[Any]):
    """A page's decoded items, with each item's JSON text exactly as the server sent it.

    Writing an item's own text instead of encoding the decoded object again saves most of the
    spooler's CPU, and keeps every number byte for byte as Lucca wrote it (``2.50`` stays
    ``2.50``, where a float would come back as ``2.5``). Only a body without line breaks (one
    JSON line per record must stay one line) and compact between its items carries texts:
    anything else is decoded and encoded again as before.
    """

    __slots__ = ("texts",)

    def __init__(self, items: list[Any], texts: list[str]) -> None:
        super().__init__(items)
        self.texts = texts


def decode_listing(content: bytes, decoder: json.JSONDecoder) -> JsonObject | None:
    """A listing body decoded, its ``items`` as :class:`RawItems`; None for any other body (not
    UTF-8, a line break, whitespace between the object's members or the items, not an object,
    invalid JSON), which the caller decodes the ordinary way, with its ordinary errors.

    Every value goes through ``decoder``'s scanner (its ``parse_float`` and ``parse_constant``
    included), value by value, so the body is parsed once and each item's span is known.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # A raw line break is never inside a JSON string (strict parsing refuses it): none at all
    # means no item's text spans two lines.
    if not text.startswith("{") or "\n" in text or "\r" in text:
        return None
    scan = decoder.scan_once  # type: ignore[attr-defined]
    body: JsonObject = {}
    try:
        position = 1
        if text[position] == "}":
            return body if len(text) == 2 else None
        while True:
            key, position = scan(text, position)
            if not isinstance(key, str) or text[position] != ":":
                return None
            position += 1
            if key == "items" and text[position] == "[":
                value, position = _items(text, position + 1, scan)
            else:
                value, position = scan(text, position)
            body[key] = value
            separator = text[position]
            position += 1
            if separator == "}":
                return body if position == len(text) else None
            if separator != ",":
                return None
    except (StopIteration, IndexError, ValueError, RecursionError):
        return None


def _items(text: str, position: int, scan: Any) -> tuple[RawItems | list[Any], int]:
    items: list[Any] = []
    texts: list[str] = []
    if text[position] == "]":
        return RawItems(items, texts), position + 1
    while True:
        item, end = scan(text, position)
        items.append(item)
        texts.append(text[position:end])
        separator = text[end]
        position = end + 1
        if separator == "]":
            return RawItems(items, texts), position
        if separator != ",":
            raise ValueError("not a list")


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
