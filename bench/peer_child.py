"""One peer in its own process (``python -m bench.peer_child --peer NAME``), run on command.

Every peer of the comparison (the plain loop, the hook, the operator, dlt's REST client,
Airflow's HttpOperator, the raw fetch loop) runs in a worker of its own, so each pays its imports
once, before any measurement, and its peak RSS is its own process's. The worker reads one JSON
command a line on stdin (where to write, which window, which sandbox and connection) and answers
one line starting with ``@@peer`` on stdout: records it says it wrote, wall and CPU seconds, its
process's peak RSS (``VmHWM``) and the output directory, which the parent checks against the
truth itself. Anything else on stdout (a library's log) is ignored by the parent.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import PAGE_SIZE, SANDBOX_KEY, isolate_airflow

MARK = "@@peer "
PATH = "/talent-training/api/v2/realized-trainings"
PEERS = ("raw", "loop", "hook", "operator", "dlt", "http_operator")
#: The connection ids the worker defines from each command (environment variables, as the
#: benchmark's other connections).
LUCCA_CONN, HTTP_CONN = "lucca_peer", "lucca_peer_http"


def vm_hwm() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def vm_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _params(start: date, end: date) -> dict[str, str]:
    """The query every peer sends: exclusive bounds one day wider, next and count inline."""
    return {
        "sessionEndOnAfter": (start - timedelta(days=1)).isoformat(),
        "sessionEndOnBefore": end.isoformat(),
        "fields.root": "next,count",
        "limit": str(PAGE_SIZE),
    }


def _encode(item: Any) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":"))


def _gzip(target: Path) -> gzip.GzipFile:
    return gzip.GzipFile(
        filename="", fileobj=open(target, "wb"), mode="wb", compresslevel=6, mtime=0
    )


def _close(out: gzip.GzipFile) -> None:
    raw = out.fileobj
    out.close()
    if raw is not None:
        raw.close()


# --------------------------------------------------------------------------- the peers


def run_raw(command: dict[str, Any], out: Path) -> int:
    from bench.baseline import fetch_only

    return fetch_only(command["url"], _day(command["start"]), _day(command["end"])).records


def run_loop(command: dict[str, Any], out: Path) -> int:
    from bench.baseline import plain_export

    run = plain_export(
        command["url"],
        _day(command["start"]),
        _day(command["end"]),
        out / "all.jsonl.gz",
        retry_429=command.get("limited", False),
    )
    return run.records


def run_hook(command: dict[str, Any], out: Path) -> int:
    """The hook's client (paging guards, retries, pacing), the records written like the loop."""
    from airflow_provider_lucca.hooks.lucca import LuccaHook

    start, end = _day(command["start"]), _day(command["end"])
    hook = LuccaHook(lucca_conn_id=LUCCA_CONN)
    records = 0
    target = _gzip(out / "all.jsonl.gz")
    try:
        for page in hook.iter_realized_trainings(
            session_end_on_after=start - timedelta(days=1), session_end_on_before=end
        ):
            if page.items:
                target.write(("\n".join(map(_encode, page.items)) + "\n").encode())
                records += len(page.items)
    finally:
        _close(target)
        hook.close()
    return records


def run_operator(command: dict[str, Any], out: Path) -> int:
    from bench.common import run_operator as execute

    run = execute(
        LUCCA_CONN,
        (out / "lake").as_uri(),
        start=_day(command["start"]),
        end=_day(command["end"]),
        file_format=command.get("format", "jsonl"),
    )
    return run.records


def run_dlt(command: dict[str, Any], out: Path) -> int:
    """dlt's RESTClient with its cursor paginator: Lucca's ``next`` token sent back as ``page``.

    Its default session retries 429 and 5xx, honouring Retry-After; it has no pacing.
    """
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.paginators import JSONResponseCursorPaginator

    client = RESTClient(
        base_url=command["url"],
        headers={"Authorization": f"lucca application={SANDBOX_KEY}"},
        paginator=JSONResponseCursorPaginator(cursor_path="next", cursor_param="page"),
        data_selector="items",
    )
    records = 0
    target = _gzip(out / "all.jsonl.gz")
    try:
        params = _params(_day(command["start"]), _day(command["end"]))
        for page in client.paginate(PATH, params=params):
            if page:
                target.write(("\n".join(map(_encode, page)) + "\n").encode())
                records += len(page)
    finally:
        _close(target)
    return records


def run_http_operator(command: dict[str, Any], out: Path) -> int:
    """Airflow's HttpOperator paging with a ``pagination_function``: it keeps every page's
    response until the last one, then hands them all to ``response_filter``, which writes them.
    Under a rate limit it retries through ``retry_args`` (tenacity, exponential back-off), as
    its documentation shows; it knows nothing of Retry-After."""
    import tenacity
    from airflow.providers.http.operators.http import HttpOperator
    from airflow.sdk.bases.operator import ExecutorSafeguard

    def next_page(response: Any) -> dict[str, Any] | None:
        cursor = response.json().get("next")
        return {"data": {"page": cursor}} if cursor else None

    def write_all(responses: list[Any]) -> int:
        records = 0
        target = _gzip(out / "all.jsonl.gz")
        try:
            for response in responses:
                items = response.json()["items"]
                if items:
                    target.write(("\n".join(map(_encode, items)) + "\n").encode())
                    records += len(items)
        finally:
            _close(target)
        return records

    retry: dict[str, Any] | None = None
    if command.get("limited"):
        retry = {
            "wait": tenacity.wait_exponential(multiplier=0.5, max=8),
            "stop": tenacity.stop_after_attempt(12),
            "retry": tenacity.retry_if_exception_type(Exception),
        }
    operator = HttpOperator(
        task_id="http",
        http_conn_id=HTTP_CONN,
        method="GET",
        endpoint=PATH,
        data=_params(_day(command["start"]), _day(command["end"])),
        headers={"Authorization": f"lucca application={SANDBOX_KEY}"},
        pagination_function=next_page,
        response_filter=write_all,
        log_response=False,
        retry_args=retry,
    )
    sentinel = {f"{type(operator).__name__}__sentinel": ExecutorSafeguard.sentinel_value}
    return int(operator.execute({}, **sentinel))  # type: ignore[arg-type]


RUNNERS: dict[str, Callable[[dict[str, Any], Path], int]] = {
    "raw": run_raw,
    "loop": run_loop,
    "hook": run_hook,
    "operator": run_operator,
    "dlt": run_dlt,
    "http_operator": run_http_operator,
}


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _define_connections(command: dict[str, Any]) -> None:
    url = command["url"]
    os.environ[f"AIRFLOW_CONN_{LUCCA_CONN.upper()}"] = json.dumps(
        {
            "conn_type": "lucca",
            "host": url,
            "password": SANDBOX_KEY,
            "extra": {"requests_per_minute": command.get("rpm", 0), "page_size": PAGE_SIZE},
        }
    )
    host, port = url.removeprefix("http://").split(":")
    os.environ[f"AIRFLOW_CONN_{HTTP_CONN.upper()}"] = json.dumps(
        {"conn_type": "http", "host": host, "port": int(port), "schema": "http"}
    )


def _imports(peer: str) -> None:
    """Everything the peer's run would import, imported before the first measurement."""
    import requests  # noqa: F401

    if peer in ("hook", "operator", "http_operator"):
        import airflow.sdk  # noqa: F401
    if peer == "hook":
        import airflow_provider_lucca.hooks.lucca
    if peer == "operator":
        import pyarrow.parquet  # noqa: F401
        from airflow.sdk import ObjectStoragePath

        import airflow_provider_lucca.operators.realized_trainings  # noqa: F401

        ObjectStoragePath("file:///").exists()  # its filesystem registry, loaded once
    if peer == "dlt":
        import dlt.sources.helpers.rest_client
        import dlt.sources.helpers.rest_client.paginators  # noqa: F401
    if peer == "http_operator":
        import tenacity  # noqa: F401
        from airflow.providers.http.operators.http import HttpOperator  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer", required=True, choices=PEERS)
    args = parser.parse_args(argv)
    isolate_airflow()
    _imports(args.peer)
    print(MARK + json.dumps({"ready": True, "rss": vm_rss()}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        _define_connections(command)
        directory = command["dir"]
        tempfile.tempdir = directory  # the operator's spool goes where its output goes
        out = Path(tempfile.mkdtemp(prefix=f"peer-{args.peer}-", dir=directory))
        answer: dict[str, Any] = {"out": str(out)}
        cpu, began = time.process_time(), time.perf_counter()
        try:
            answer["records"] = RUNNERS[args.peer](command, out)
        except Exception as exc:  # reported, not fatal: the parent marks the run failed
            answer["error"] = f"{type(exc).__name__}: {str(exc)[:500]}"
        answer["wall"] = time.perf_counter() - began
        answer["cpu"] = time.process_time() - cpu
        answer["peak_rss"] = vm_hwm()
        print(MARK + json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
