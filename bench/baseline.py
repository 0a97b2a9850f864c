"""The two reference loops the operator is measured against, written as plainly as possible.

- :func:`fetch_only` follows cursors and does nothing else (no JSON parsing, no writing): the most
  the sandbox and the HTTP stack can serve, so we can tell whether the sandbox is the bottleneck.
- :func:`plain_export` is what someone would write in ten minutes without the operator: a requests
  loop that follows cursors and writes every record as one compact JSON line into one gzip file
  (same compression level and line format as the operator's parts). It has no retries, no pacing,
  no partitioning, no deduplication, no manifests: the operator's target is 0.8x its speed.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import requests

from bench.common import PAGE_SIZE, SANDBOX_KEY

PATH = "/talent-training/api/v2/realized-trainings"
_COUNT_RE = re.compile(rb'"count":(\d+)')


@dataclass(frozen=True)
class LoopRun:
    records: int
    pages: int
    wall: float
    cpu: float
    bytes_received: int

    @property
    def records_per_second(self) -> float:
        return self.records / self.wall


def _params(start: date, end: date) -> list[tuple[str, str]]:
    # The same query the client sends: exclusive bounds one day wider, next and count inline.
    return [
        ("sessionEndOnAfter", (start - timedelta(days=1)).isoformat()),
        ("sessionEndOnBefore", end.isoformat()),
        ("fields.root", "next,count"),
        ("limit", str(PAGE_SIZE)),
    ]


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    session.headers["Authorization"] = f"lucca application={SANDBOX_KEY}"
    return session


def fetch_only(url: str, start: date, end: date) -> LoopRun:
    """Follow cursors without decoding pages: the cursor is read from the end of the body.

    Quotes inside JSON strings are escaped, so the last ``"next":`` of a body is the top-level
    one, never text from a record.
    """
    params = _params(start, end)
    cpu, began = time.process_time(), time.perf_counter()
    pages = size = 0
    total = 0
    cursor: str | None = None
    with _session() as session:
        while True:
            query = params if cursor is None else [*params, ("page", cursor)]
            response = session.get(url + PATH, params=query, timeout=30)
            response.raise_for_status()
            body = response.content
            pages += 1
            size += len(body)
            if pages == 1:
                match = _COUNT_RE.search(body, max(0, len(body) - 64))
                total = int(match.group(1)) if match else 0
            tail = body[body.rindex(b'"next":') + 7 :]
            if tail.startswith(b"null"):
                break
            cursor = tail[1 : tail.index(b'"', 1)].decode()
    return LoopRun(total, pages, time.perf_counter() - began, time.process_time() - cpu, size)


def plain_export(
    url: str, start: date, end: date, target: Path, *, retry_429: bool = False
) -> LoopRun:
    """Cursor loop writing the records as compact JSON lines into one ``.jsonl.gz`` file.

    ``retry_429``: what one adds once the loop meets a rate limit: on a 429, sleep the
    Retry-After it names and send the request again (no pacing).
    """
    params = _params(start, end)
    cpu, began = time.process_time(), time.perf_counter()
    pages = records = size = 0
    cursor: str | None = None
    with (
        _session() as session,
        open(target, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out,
    ):
        while True:
            query = params if cursor is None else [*params, ("page", cursor)]
            response = session.get(url + PATH, params=query, timeout=30)
            if retry_429 and response.status_code == 429:
                time.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            response.raise_for_status()
            size += len(response.content)
            body = json.loads(response.content)
            pages += 1
            items = body["items"]
            records += len(items)
            lines = [json.dumps(item, ensure_ascii=False, separators=(",", ":")) for item in items]
            out.write(("\n".join(lines) + "\n").encode() if lines else b"")
            cursor = body["next"]
            if cursor is None:
                break
    return LoopRun(records, pages, time.perf_counter() - began, time.process_time() - cpu, size)
