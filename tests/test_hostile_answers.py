"""Hostile or broken answers, served over real HTTP from a loopback server scripted by each test.

Every broken answer must end the extraction with a typed error (a ``LuccaError`` subclass, never a
``KeyError``/``TypeError`` from inside) whose message says what was wrong, and must leave the
dataset exactly as the previous run committed it: same manifests, same files, byte for byte.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from airflow.sdk import ObjectStoragePath
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaAuthError,
    LuccaClient,
    LuccaError,
    LuccaNotFoundError,
    LuccaNotJSONPageError,
    LuccaRedirectError,
    LuccaRequestError,
    LuccaResponseError,
    LuccaRetriesExhaustedError,
)
from airflow_provider_lucca.extraction.errors import LuccaCountMismatchError, LuccaDataChangedError
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from lucca_sandbox import FaultSchedule, SandboxServer
from tests.helpers import SANDBOX_KEY, client_for, read_dataset, tree

LOG = logging.getLogger("tests.hostile")
KEY = "hostile-tests-key"
START, UNTIL = date(2025, 3, 1), date(2025, 3, 4)
WINDOW_DAYS = [(START + timedelta(n)).isoformat() for n in range((UNTIL - START).days)]
PAGE_SIZE = 5
BODY_LIMIT = 256 * 1024
#: The client of these tests: pages of 5, a 5 s read timeout, a body limit, two quick attempts.
hostile_client = functools.partial(
    client_for,
    api_key=KEY,
    logger=LOG,
    page_size=PAGE_SIZE,
    timeout=5.0,
    max_response_bytes=BODY_LIMIT,
)


# --------------------------------------------------------------------------- a scripted server


@dataclass
class Reply:
    """One answer. ``raw`` is written as is (no status line of ours); ``stream`` writes the body
    itself after the headers (endless or trickling bodies)."""

    status: int = 200
    body: bytes = b""
    headers: list[tuple[str, str]] = field(
        default_factory=lambda: [("Content-Type", "application/json")]
    )
    raw: bytes | None = None
    stream: Callable[[Any], None] | None = None


Script = Callable[[int, dict[str, list[str]]], Reply]


class ScriptedServer:
    """HTTP/1.1 on 127.0.0.1 (free port); ``script(number, query)`` decides every answer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.script: Script = lambda number, query: Reply(404)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = parse_qs(query, keep_blank_values=True)
                with owner.lock:
                    owner.requests.append(
                        {"path": path, "query": params, "headers": dict(self.headers)}
                    )
                    number = len(owner.requests)
                reply = owner.script(number, params)
                try:
                    if reply.raw is not None:
                        self.close_connection = True
                        self.wfile.write(reply.raw)
                        return
                    self.send_response(reply.status)
                    names = {name.lower() for name, _ in reply.headers}
                    for name, value in reply.headers:
                        self.send_header(name, value)
                    if reply.stream is not None:
                        self.close_connection = True
                        self.send_header("Connection", "close")
                        self.end_headers()
                        reply.stream(self.wfile)
                        return
                    if "content-length" not in names:
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    self.close_connection = True  # the client gave up: expected here

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def serve(self, script: Script) -> None:
        with self.lock:
            self.requests.clear()
            self.script = script

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    yield scripted
    scripted.stop()


# --------------------------------------------------------------------------- answers


def record(number: int, day: str = "2025-03-02", **extra: Any) -> dict[str, Any]:
    return {
        "id": number,
        "ownerId": 416,
        "training": {"id": 45, "title": "Français"},
        "sessionStartsOn": day,
        "sessionEndsOn": day,
        "hasAttended": True,
        "durationInHours": 3.5,
        **extra,
    }


GOOD_RECORDS = [record(n, WINDOW_DAYS[n % len(WINDOW_DAYS)]) for n in range(1, 13)]


def json_reply(payload: object, status: int = 200, **headers: str) -> Reply:
    return Reply(
        status,
        json.dumps(payload).encode(),
        [("Content-Type", "application/json"), *headers.items()],
    )


def good_pages(records: list[dict[str, Any]], with_count: bool = True) -> Script:
    """A well-behaved API: cursor ``pN`` is the N-th page, the last page has ``next: null``."""

    def script(number: int, query: dict[str, list[str]]) -> Reply:
        index = int(query.get("page", ["p0"])[0][1:])
        items = records[index * PAGE_SIZE : (index + 1) * PAGE_SIZE]
        more = (index + 1) * PAGE_SIZE < len(records)
        payload: dict[str, Any] = {"items": items, "next": f"p{index + 1}" if more else None}
        if with_count:
            payload["count"] = len(records)
        return json_reply(payload)

    return script


def after_good_first_page(hostile: Script | Reply) -> Script:
    """Page 1 is fine (no count, a next cursor); every later answer is ``hostile``."""

    def script(number: int, query: dict[str, list[str]]) -> Reply:
        if "page" not in query:
            return json_reply({"items": GOOD_RECORDS[:PAGE_SIZE], "next": "p1"})
        return hostile(number, query) if callable(hostile) else hostile

    return script


def endless(block: bytes) -> Callable[[Any], None]:
    def write(wfile: Any) -> None:
        for _ in range(1024):  # at most 1024 blocks: the client must stop far earlier
            wfile.write(block)

    return write


# --------------------------------------------------------------------------- helpers


def extract(url: str, output: ObjectStoragePath, **config: Any) -> dict[str, Any]:
    with hostile_client(url, **config) as client:
        return extract_realized_trainings(
            client, ExtractionRequest(window=DateWindow(START, UNTIL)), output, log=LOG
        )


def committed(server: ScriptedServer, root: Path) -> tuple[ObjectStoragePath, dict[str, bytes]]:
    """A dataset with a committed window (from a well-behaved answer), and its bytes."""
    output = ObjectStoragePath(f"file://{root}")
    server.serve(good_pages(GOOD_RECORDS))
    summary = extract(server.url, output)
    assert summary["records"] == len(GOOD_RECORDS)
    before = tree(root)
    assert sum(name.endswith("_manifest.json") for name in before) == len(WINDOW_DAYS)
    return output, before


# --------------------------------------------------------------------------- hand-written cases

NOT_AN_OBJECT = "expected a JSON object"

CASES: dict[str, tuple[Script, type[LuccaError], list[str]]] = {
    "200 that is not JSON": (
        after_good_first_page(Reply(200, b"<html>oops</html>", [("Content-Type", "text/html")])),
        LuccaNotJSONPageError,
        ["not JSON", "text/html", "oops"],
    ),
    "200 with an empty body": (
        after_good_first_page(Reply(200, b"")),
        LuccaResponseError,
        ["not JSON"],
    ),
    "body that is not UTF-8": (
        after_good_first_page(Reply(200, b'{"items": ["\xff\xfe"]}')),
        LuccaResponseError,
        ["not JSON"],
    ),
    "NaN is not JSON": (
        after_good_first_page(Reply(200, b'{"items": [{"id": NaN}], "next": null}')),
        LuccaResponseError,
        ["not JSON"],
    ),
    "a number beyond float range": (
        after_good_first_page(
            Reply(200, b'{"items": [{"id": 99, "sessionEndsOn": "2025-03-02", "d": 1e400}]}')
        ),
        LuccaResponseError,
        ["not JSON"],
    ),
    "JSON nested deeper than the parser can go": (
        after_good_first_page(Reply(200, b"[" * 100_000 + b"]" * 100_000)),
        LuccaResponseError,
        ["not JSON"],
    ),
    "an error body nested deeper than the parser can go": (
        after_good_first_page(Reply(503, b"[" * 100_000 + b"]" * 100_000)),
        LuccaRetriesExhaustedError,
        ["HTTP 503", "2 attempts"],
    ),
    "JSON array instead of an object": (
        after_good_first_page(json_reply([record(99)])),
        LuccaResponseError,
        [NOT_AN_OBJECT, "list"],
    ),
    "JSON string instead of an object": (
        after_good_first_page(json_reply("items")),
        LuccaResponseError,
        [NOT_AN_OBJECT, "str"],
    ),
    "items missing": (
        after_good_first_page(json_reply({"data": {"items": []}, "next": None})),
        LuccaResponseError,
        ["'items' is missing", "page 2"],
    ),
    "items not a list": (
        after_good_first_page(json_reply({"items": {"0": record(99)}})),
        LuccaResponseError,
        ["'items' is dict"],
    ),
    "items null": (
        after_good_first_page(json_reply({"items": None})),
        LuccaResponseError,
        ["'items' is missing"],
    ),
    "a record that is not an object": (
        after_good_first_page(json_reply({"items": [record(99), [1, 2]], "next": None})),
        LuccaResponseError,
        ["item 1 is list"],
    ),
    "a null record": (
        after_good_first_page(json_reply({"items": [None]})),
        LuccaResponseError,
        ["item 0 is NoneType"],
    ),
    "next is a number": (
        after_good_first_page(json_reply({"items": [], "next": 2})),
        LuccaResponseError,
        ["'next' is 2"],
    ),
    "next is an object": (
        after_good_first_page(json_reply({"items": [], "next": {"page": 2}})),
        LuccaResponseError,
        ["'next' is {'page': 2}"],
    ),
    "next is an empty string": (
        after_good_first_page(json_reply({"items": [], "next": ""})),
        LuccaResponseError,
        ["'next' is ''"],
    ),
    "a cursor that repeats": (
        after_good_first_page(json_reply({"items": [], "next": "p1"})),
        LuccaResponseError,
        ["cursor already followed", "'p1'"],
    ),
    "cursors that cycle": (
        after_good_first_page(
            lambda number, query: json_reply(
                {"items": [], "next": {"p1": "p2", "p2": "p3", "p3": "p1"}[query["page"][0]]}
            )
        ),
        LuccaResponseError,
        ["cursor already followed"],
    ),
    "more items than limit": (
        after_good_first_page(json_reply({"items": [record(90 + n) for n in range(6)]})),
        LuccaResponseError,
        ["6 items for limit=5"],
    ),
    "count is a string": (
        lambda number, query: json_reply({"items": [], "count": "12"}),
        LuccaResponseError,
        ["'count' is '12'"],
    ),
    "count is a boolean": (
        lambda number, query: json_reply({"items": [], "count": True}),
        LuccaResponseError,
        ["'count' is True"],
    ),
    "count is negative": (
        lambda number, query: json_reply({"items": [], "count": -1}),
        LuccaResponseError,
        ["'count' is -1"],
    ),
    "count larger than what was received": (
        lambda number, query: json_reply({"items": GOOD_RECORDS[:4], "count": 5}),
        LuccaCountMismatchError,
        ["Received 4 records but Lucca reported count=5", "nothing was committed"],
    ),
    "count smaller than what was received": (
        lambda number, query: json_reply({"items": GOOD_RECORDS[:4], "count": 3}),
        LuccaCountMismatchError,
        ["Received 4 records but Lucca reported count=3"],
    ),
    "a string holding an unpaired surrogate escape (pretty JSON)": (
        lambda number, query: json_reply(
            {"items": [record(1, WINDOW_DAYS[0], note="caf\ud800")], "count": 1}
        ),
        LuccaResponseError,
        ["unpaired UTF-16 surrogate", "caf"],
    ),
    "a string holding an unpaired surrogate escape (compact JSON)": (
        lambda number, query: Reply(
            200,
            json.dumps(
                {"items": [record(1, WINDOW_DAYS[0], note="caf\udc00")], "count": 1},
                separators=(",", ":"),
            ).encode(),
            [("Content-Type", "application/json")],
        ),
        LuccaResponseError,
        ["unpaired UTF-16 surrogate", "caf"],
    ),
    "count that changes between pages": (
        lambda number, query: json_reply(
            {"items": [], "count": 12, "next": "p1"}
            if "page" not in query
            else {"items": [], "count": 13, "next": None}
        ),
        LuccaDataChangedError,
        ["each of 3 reads", "count changed from 12 on page 1 to 13 on page 2"],
    ),
    "a record whose sessionEndsOn is a list": (
        after_good_first_page(json_reply({"items": [record(99, day=["2025-03-02"])]})),  # type: ignore[arg-type]
        LuccaResponseError,
        ["id=99", "sessionEndsOn=['2025-03-02']"],
    ),
    "a record whose sessionEndsOn is an object": (
        after_good_first_page(json_reply({"items": [record(99, day={"d": 1})]})),  # type: ignore[arg-type]
        LuccaResponseError,
        ["id=99", "sessionEndsOn={'d': 1}"],
    ),
    "a record without sessionEndsOn": (
        after_good_first_page(json_reply({"items": [{"id": 99, "ownerId": 1}]})),
        LuccaResponseError,
        ["id=99", "sessionEndsOn=None"],
    ),
    "a record with an impossible date": (
        after_good_first_page(json_reply({"items": [record(99, day="2025-02-30")]})),
        LuccaResponseError,
        ["sessionEndsOn='2025-02-30'"],
    ),
    "HTML maintenance page with 503": (
        after_good_first_page(
            Reply(503, b"<!DOCTYPE html><h1>Maintenance</h1>", [("Content-Type", "text/html")])
        ),
        LuccaRetriesExhaustedError,
        ["HTTP 503", "2 attempts", REALIZED_TRAININGS_PATH, "Maintenance"],
    ),
    "HTML 404 page": (
        after_good_first_page(Reply(404, b"<html><body>Not here</body></html>", [])),
        LuccaNotFoundError,
        ["HTTP 404", "check the account URL", "Not here"],
    ),
    "401 problem+json with an enormous detail": (
        lambda number, query: json_reply(
            {"title": "Unauthorized", "detail": "x" * 100_000},
            401,
            **{"Content-Type": "application/problem+json"},
        ),
        LuccaAuthError,
        ["HTTP 401", "Unauthorized"],
    ),
    "400 whose problem title is not a string": (
        lambda number, query: json_reply({"title": {"nested": [1]}, "detail": None}, 400),
        LuccaRequestError,
        ["HTTP 400", "nested"],
    ),
    "302 without a Location": (
        after_good_first_page(Reply(302, b"")),
        LuccaRedirectError,
        ["HTTP 302", "not followed"],
    ),
    "enormous body announced by Content-Length": (
        after_good_first_page(
            Reply(
                200,
                b"",
                [("Content-Type", "application/json"), ("Content-Length", str(BODY_LIMIT + 1))],
                stream=endless(b" " * 1024),
            )
        ),
        LuccaResponseError,
        ["announces", f"{BODY_LIMIT + 1} bytes", "refusing"],
    ),
    "enormous body without Content-Length": (
        after_good_first_page(Reply(200, b"", stream=endless(b'{"items": [' + b" " * 65536))),
        LuccaResponseError,
        ["larger than", f"{BODY_LIMIT} bytes", "refusing"],
    ),
    "gzip bomb": (
        after_good_first_page(
            Reply(
                200,
                gzip.compress(b"[" + b" " * (8 * BODY_LIMIT) + b"]"),
                [("Content-Type", "application/json"), ("Content-Encoding", "gzip")],
            )
        ),
        LuccaResponseError,
        ["larger than", "refusing"],
    ),
    "not HTTP at all": (
        after_good_first_page(Reply(raw=b"SSH-2.0-OpenSSH_9.6\r\n\r\n")),
        LuccaRetriesExhaustedError,
        ["2 attempts", "ConnectionError"],
    ),
    "body shorter than its Content-Length": (
        after_good_first_page(
            Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b'{"items": [')
        ),
        LuccaRetriesExhaustedError,
        ["2 attempts"],
    ),
}


@pytest.mark.parametrize(("script", "error", "fragments"), CASES.values(), ids=list(CASES))
def test_broken_answer_fails_typed_and_clear_and_commits_nothing(
    server: ScriptedServer,
    tmp_path: Path,
    script: Script,
    error: type[LuccaError],
    fragments: list[str],
) -> None:
    root = tmp_path / "dataset"
    output, before = committed(server, root)

    server.serve(script)
    with pytest.raises(LuccaError) as info:
        extract(server.url, output)

    assert type(info.value) is error, repr(info.value)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert len(message) < 1500, "the message must stay readable whatever the body"
    assert tree(root) == before, "a broken answer must leave the committed window untouched"


def test_sandbox_html_maintenance_page_with_200_fails_typed_and_commits_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    """The sandbox's own ``html`` fault: a proxy's maintenance page served as 200."""
    output = ObjectStoragePath(f"file://{tmp_path / 'dataset'}")
    with LuccaClient(
        ClientConfig(base_url=sandbox.url, api_key=SANDBOX_KEY, requests_per_minute=0)
    ) as client:
        request = ExtractionRequest(window=DateWindow(date(2025, 3, 1), date(2025, 6, 1)))
        sandbox.reset_stats()
        sandbox.configure(faults=FaultSchedule(at={2: "html"}))
        with pytest.raises(LuccaResponseError, match=r"not JSON.*text/html.*Maintenance"):
            extract_realized_trainings(client, request, output, log=LOG)
    assert sandbox.stats()["faults_by_kind"] == {"html": 1}
    assert not list(tmp_path.rglob("_manifest.json"))


def test_enormous_body_is_abandoned_without_reading_it(server: ScriptedServer) -> None:
    """The client stops at its limit: it does not download a 256 MB answer to find out.

    What the server manages to send before the client hangs up is bounded by the socket
    buffers (tens of MB at most on Linux loopback), not by the size of the answer.
    """
    sent: list[int] = []

    def stream(wfile: Any) -> None:
        for _ in range(4096):
            wfile.write(b" " * 65536)
            sent.append(65536)

    server.serve(lambda number, query: Reply(200, b"", stream=stream))
    with hostile_client(server.url) as client, pytest.raises(LuccaResponseError, match="larger"):
        list(client.iter_realized_trainings())
    time.sleep(0.2)  # let the server notice the hang-up
    assert sum(sent) < 64 * 2**20


# --------------------------------------------------------------------------- property


JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
OUTSIDE_DAYS = ["2025-02-27", "2025-02-28", "2025-03-04", "2025-03-05"]
DAY_VALUES = st.one_of(
    st.sampled_from(WINDOW_DAYS + OUTSIDE_DAYS),
    st.sampled_from(WINDOW_DAYS),
    st.sampled_from(["../../etc", "2025-13-01", "", "2025-3-1", "2025-03-02T00:00:00"]),
    st.lists(JSON_SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=2),
    JSON_SCALARS,
)
RECORDS = st.fixed_dictionaries(
    {"sessionEndsOn": DAY_VALUES},
    optional={
        "id": st.integers(1, 6) | JSON_VALUES,
        "durationInHours": JSON_SCALARS,
        "training": JSON_VALUES,
    },
)
ITEMS = st.one_of(
    st.lists(RECORDS, max_size=PAGE_SIZE),
    st.lists(RECORDS | JSON_VALUES, max_size=PAGE_SIZE + 2),
    JSON_VALUES,
)
NEXTS = st.one_of(st.none(), st.none(), st.sampled_from(["p1", "p2", "zz"]), JSON_VALUES)
COUNTS = st.one_of(st.none(), st.none(), st.integers(-1, 15), JSON_VALUES)
PAGES = st.one_of(
    st.fixed_dictionaries({"items": ITEMS}, optional={"next": NEXTS, "count": COUNTS}),
    st.fixed_dictionaries({}, optional={"items": ITEMS, "next": NEXTS, "count": COUNTS}),
)
# Mostly page-shaped bodies with record-shaped items: that is where the parsing can go wrong.
BODIES = st.one_of(
    PAGES.map(lambda page: json.dumps(page).encode()),
    PAGES.map(lambda page: json.dumps(page).encode()),
    PAGES.map(lambda page: json.dumps(page).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=64),
)
STATUSES = st.sampled_from([200] * 12 + [201, 204, 301, 307, 400, 401, 404, 408, 418, 429, 503])
RETRY_AFTER = st.sampled_from([None, "0", "soon", "-5", "99999", "Wed, 21 Oct 2015 07:28:00 GMT"])


def expected_dataset(pages: list[object]) -> dict[str, list[dict[str, Any]]]:
    """What a successful extraction must commit: in-window records, first of each id per day."""
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    result: dict[str, list[dict[str, Any]]] = {day: [] for day in WINDOW_DAYS}
    seen: dict[str, set[str]] = {day: set() for day in WINDOW_DAYS}
    for page in pages:
        assert isinstance(page, dict)
        for item in page["items"]:
            day = item.get("sessionEndsOn")
            if not isinstance(day, str) or day not in result:
                continue
            key = "" if item.get("id") is None else encode(item["id"])
            if key and key in seen[day]:
                continue
            seen[day].add(key)
            result[day].append(item)
    return result


@pytest.fixture(scope="module")
def baseline(server: ScriptedServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset with the window committed once; each example starts from a copy of it."""
    root = tmp_path_factory.mktemp("baseline") / "dataset"
    committed(server, root)
    return root


@pytest.mark.slow
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(status=STATUSES, body=BODIES, retry_after=RETRY_AFTER)
def test_any_second_answer_either_commits_the_truth_or_fails_typed_leaving_the_dataset(
    server: ScriptedServer, baseline: Path, status: int, body: bytes, retry_after: str | None
) -> None:
    first_page = {"items": GOOD_RECORDS[:PAGE_SIZE], "next": "p1"}
    headers = [("Content-Type", "application/json")]
    if retry_after is not None:
        headers.append(("Retry-After", retry_after))

    def script(number: int, query: dict[str, list[str]]) -> Reply:
        page = query.get("page", [None])[0]
        if page is None:
            return json_reply(first_page)
        if page == "p1":
            return Reply(status, body, headers)
        return json_reply({"items": [], "next": None})  # any further cursor: a last empty page

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "dataset"
        shutil.copytree(baseline, root)
        before = tree(root)
        server.serve(script)
        failure: LuccaError | None = None
        try:
            extract(server.url, ObjectStoragePath(f"file://{root}"))
        except LuccaError as exc:  # anything else (KeyError, TypeError...) fails the test
            failure = exc
        if failure is not None:
            assert str(failure)
            assert tree(root) == before, "a failed run must leave the dataset untouched"
            return
        # Success is only possible for a 2xx whose body is a valid page.
        assert 200 <= status < 300
        second = json.loads(body)
        pages: list[object] = [first_page, second]
        if second.get("next") is not None:
            pages.append({"items": []})
        assert read_dataset(root, sort_by_id=False) == expected_dataset(pages)


@pytest.mark.slow
def test_a_body_trickled_slower_than_the_read_timeout_is_abandoned_in_bounded_time(
    server: ScriptedServer,
) -> None:
    body = b'{"items": [], "next": null}'

    def trickle(wfile: Any) -> None:
        for byte in body:
            wfile.write(bytes([byte]))
            wfile.flush()
            time.sleep(0.1)

    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    server.serve(lambda number, query: Reply(200, b"", headers, stream=trickle))
    started = time.monotonic()
    with hostile_client(server.url, timeout=0.5) as client, contextlib.suppress(LuccaError):
        list(client.iter_realized_trainings())
    # Two attempts of about 0.5 s each, plus slack; one trickled answer takes 2.7 s.
    assert time.monotonic() - started < 2.0


def test_a_member_named_twice_is_written_once_with_the_value_the_run_counted(
    server: ScriptedServer, tmp_path: Path
) -> None:
    """A compact item naming ``sessionEndsOn`` twice: JSON readers disagree on which value wins
    (Python the last, DuckDB refuses the file), so the line written holds each member once, with
    the value the run dated, counted and deduplicated the record by (the last)."""
    first, second = WINDOW_DAYS[0], WINDOW_DAYS[1]
    item = json.dumps(record(1, first), separators=(",", ":"))
    item = item[:-1] + f',"sessionEndsOn":"{second}"}}'
    body = f'{{"items":[{item}],"count":1}}'.encode()
    server.serve(lambda number, query: Reply(200, body, [("Content-Type", "application/json")]))
    root = tmp_path / "dataset"
    summary = extract(server.url, ObjectStoragePath(f"file://{root}"))

    assert summary["partitions"][second] == 1
    assert summary["partitions"][first] == 0
    (part,) = (root / f"session_end_on={second}").glob("part-*")
    (line,) = gzip.decompress(part.read_bytes()).decode().splitlines()

    def once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        assert len({name for name, _ in pairs}) == len(pairs), line
        return dict(pairs)

    assert json.loads(line, object_pairs_hook=once)["sessionEndsOn"] == second
