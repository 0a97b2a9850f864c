"""Command line entry point of the Lucca sandbox (``lucca-sandbox`` / ``python -m ...``).

Used by the demo, the benchmark and docker-compose, so it behaves like a well-mannered
service: one readiness line on stdout, an optional port file written atomically for
callers that asked for a random port (``--port 0``), and a clean exit (code 0) on SIGTERM
or SIGINT so containers and test harnesses can stop it without noise.

It is a development tool: it listens on loopback unless given ``--allow-remote`` and a
non-default ``--api-key``, and its mutating admin endpoints need a token (``--admin-token``
or ``$LUCCA_SANDBOX_ADMIN_TOKEN``; generated and printed at start when neither is given).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
from datetime import date
from types import FrameType

from .faults import FaultSchedule, parse_fault_kinds, parse_fault_spec
from .moves import RecordMove, coerce_moves
from .mutations import MutationSpec, parse_mutation_spec
from .server import BOUNDS, DEFAULT_API_KEY, ORDERS, SandboxConfig, SandboxServer

__all__ = ["ADMIN_ENDPOINTS", "DEFAULT_API_KEY", "build_parser", "main"]

#: The ``--help`` epilog: what the sandbox answers besides the API, and who may call it.
ADMIN_ENDPOINTS = """\
admin endpoints (GET: open; POST: 'Authorization: Bearer <admin token>'):
  GET  /_sandbox/health       {"status": "ok"}
  GET  /_sandbox/stats        request counters by status, faults, moves applied
  GET  /_sandbox/config       the current settings
  GET  /_sandbox/requests     the request log: every API request answered, in arrival
                              order, {"requests": [{"at": <time.time()>, "status": <int,
                              null if dropped>, "path", "query"}], "dropped": <evicted>};
                              the last 100,000 are kept, the API key never is
  POST /_sandbox/config       change settings or data (a JSON object, as configure())
  POST /_sandbox/reset-stats  zero the counters, the rate window and the request log
  POST /_sandbox/mutate       seeded late imports, deletions, attendance flips: {"seed",
                              "inserts", "deletions", "flips", "from", "until",
                              "delete_ids", "flip_ids"}; answers {"changes": [{"kind",
                              "id", "sessionEndsOn", "hasAttended"}]}
"""


def _date(text: str) -> date:
    try:
        if len(text) != 10:
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {text!r}") from None


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {text!r}")
    return value


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in 0..1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def _fault_spec(text: str) -> dict[int, str]:
    try:
        return parse_fault_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _fault_kinds(text: str) -> tuple[str, ...]:
    try:
        return parse_fault_kinds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _url(text: str) -> str:
    if not text.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"expected an http(s) URL, got {text!r}")
    return text


def _moves(text: str) -> tuple[RecordMove, ...]:
    try:
        return coerce_moves(json.loads(text))
    except ValueError as error:  # json.JSONDecodeError is a ValueError
        raise argparse.ArgumentTypeError(f"expected a JSON list of moves: {error}") from None


def _mutations(text: str) -> MutationSpec:
    try:
        return parse_mutation_spec(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_parser() -> argparse.ArgumentParser:
    """The CLI flags; kept separate so tests and docs can introspect them."""
    parser = argparse.ArgumentParser(
        prog="lucca-sandbox",
        description="Local emulator of Lucca GET /talent-training/api/v2/realized-trainings.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=ADMIN_ENDPOINTS,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    net.add_argument(
        "--port", type=_port, default=8089, help="bind port (default 8089; 0 = any free port)"
    )
    net.add_argument(
        "--port-file", metavar="PATH", help="write the bound port to PATH once listening"
    )
    net.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a non-loopback --host (also needs a non-default --api-key)",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--seed", type=int, default=42, help="dataset seed (default 42)")
    data.add_argument(
        "--records", type=_non_negative_int, default=2000, help="dataset size (default 2000)"
    )
    data.add_argument(
        "--start", type=_date, default=date(2025, 1, 1), help="first sessionEndsOn (2025-01-01)"
    )
    data.add_argument(
        "--end", type=_date, default=date(2025, 12, 31), help="last sessionEndsOn (2025-12-31)"
    )
    data.add_argument(
        "--mutations",
        type=_mutations,
        default=None,
        metavar="KEY=VALUE,...",
        help="mutate the generated history once at start, like POST /_sandbox/mutate: "
        "inserts=N (late CSV imports), deletions=N, flips=N (hasAttended), seed=N (0), "
        "from=YYYY-MM-DD, until=YYYY-MM-DD (half-open sessionEndsOn range; default the "
        "dataset's), e.g. inserts=5,deletions=3,flips=4,seed=7",
    )
    api = parser.add_argument_group("API behaviour")
    api.add_argument(
        "--api-key",
        default=os.environ.get("LUCCA_SANDBOX_API_KEY") or DEFAULT_API_KEY,
        help="expected API key (default: $LUCCA_SANDBOX_API_KEY or sandbox-api-key)",
    )
    api.add_argument(
        "--admin-token",
        default=os.environ.get("LUCCA_SANDBOX_ADMIN_TOKEN") or None,
        help="token of POST /_sandbox/config and /_sandbox/reset-stats, sent as "
        "'Authorization: Bearer <token>' (default: $LUCCA_SANDBOX_ADMIN_TOKEN, else a random "
        "one printed at start)",
    )
    api.add_argument(
        "--order",
        choices=ORDERS,
        default="id",
        help="item order: id (default), or end_date (sessionEndsOn then id)",
    )
    api.add_argument(
        "--bounds",
        choices=BOUNDS,
        default="exclusive",
        help="reading of sessionEndOnAfter/Before (default exclusive)",
    )
    api.add_argument(
        "--requests-per-minute",
        type=_non_negative_int,
        default=0,
        help="tenant rate limit over a sliding 60 s window (default 0 = off)",
    )
    timeouts = parser.add_argument_group(
        "408 timeouts",
        "Answer 408 'send a simpler request', as Lucca does to a request running over 5 s. "
        "A window's width is sessionEndOnBefore - sessionEndOnAfter in days; a window exactly "
        "N days wide is answered, a missing bound is too wide.",
    )
    timeouts.add_argument(
        "--timeout-window-days",
        type=_non_negative_int,
        default=None,
        metavar="N",
        help="408 for a window wider than N days or missing a bound (default: off)",
    )
    timeouts.add_argument(
        "--timeout-records",
        type=_non_negative_int,
        default=None,
        metavar="M",
        help="408 for filters matching more than M records (default: off)",
    )
    timeouts.add_argument(
        "--timeout-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before answering the 408 (default 0; Lucca: 5)",
    )
    faults = parser.add_argument_group("fault injection")
    faults.add_argument(
        "--faults",
        type=_fault_spec,
        default={},
        metavar="N:KIND,...",
        help="faults by 1-based API request number, e.g. 3:503,5:drop",
    )
    faults.add_argument(
        "--fault-rate", type=_rate, default=0.0, help="probability of a random fault (0..1)"
    )
    faults.add_argument(
        "--fault-kinds",
        type=_fault_kinds,
        default=(),
        metavar="KIND,...",
        help="kinds drawn by --fault-rate, e.g. 503,429",
    )
    faults.add_argument("--fault-seed", type=int, default=0, help="seed of the random faults")
    faults.add_argument(
        "--slow-seconds", type=_seconds, default=3.0, help="delay of the 'slow' fault (3.0)"
    )
    faults.add_argument(
        "--redirect-url", type=_url, default=None, help="target of the 'redirect' fault"
    )
    faults.add_argument(
        "--moves",
        type=_moves,
        default=(),
        metavar="JSON",
        help="records whose sessionEndsOn changes mid-run, e.g. "
        '\'[{"id": 7, "to": ["2025-01-05"], "after_request": 1, "every": null}]\'',
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _write_port_file(path: str, port: int) -> None:
    """Write atomically so a poller never reads a half-written file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".lucca-sandbox-port-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{port}\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    """Run the sandbox until SIGTERM/SIGINT; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.start > args.end:
        parser.error("argument --end: must be on or after --start")
    if args.fault_rate > 0 and not args.fault_kinds:
        parser.error("argument --fault-kinds: required when --fault-rate is above 0")

    schedule: FaultSchedule | None = None
    if args.faults or args.fault_rate > 0:
        schedule = FaultSchedule(
            at=args.faults, rate=args.fault_rate, kinds=args.fault_kinds, seed=args.fault_seed
        )
    try:
        config = SandboxConfig(
            seed=args.seed,
            records=args.records,
            start=args.start,
            end=args.end,
            api_key=args.api_key,
            bounds=args.bounds,
            requests_per_minute=args.requests_per_minute,
            faults=schedule,
            slow_seconds=args.slow_seconds,
            redirect_url=args.redirect_url,
            host=args.host,
            port=args.port,
            verbose=args.verbose,
            order=args.order,
            moves=args.moves,
            admin_token=args.admin_token,
            allow_remote=args.allow_remote,
            timeout_window_days=args.timeout_window_days,
            timeout_records=args.timeout_records,
            timeout_delay_seconds=args.timeout_delay,
        )
    except ValueError as error:
        parser.error(str(error))
    # Before binding: the config refuses a non-loopback host without --allow-remote and a key.

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, _on_signal) for signum in (signal.SIGTERM, signal.SIGINT)
    }
    server = SandboxServer(config)
    try:
        changes = None
        if args.mutations is not None:
            try:
                changes = server.mutate(**args.mutations.to_dict())
            except ValueError as error:
                parser.error(f"argument --mutations: {str(error).removeprefix('mutate: ')}")
        try:
            server.start()
        except OSError as error:
            print(
                f"lucca-sandbox: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr
            )
            return 1
        if args.port_file:
            _write_port_file(args.port_file, server.port)
        host = args.host if ":" not in args.host else f"[{args.host.strip('[]')}]"
        if args.admin_token is None:
            print(
                f"Admin token (generated): {server.admin_token} (send 'Authorization: Bearer "
                "<token>' with POST /_sandbox/config and /_sandbox/reset-stats)",
                flush=True,
            )
        if changes is not None:
            print(f"Mutations at start: {json.dumps(changes)}", flush=True)
        print(
            f"Lucca sandbox listening on http://{host}:{server.port} "
            f"({len(server.records)} records, bounds={config.bounds}, order={config.order})",
            flush=True,
        )
        # Short waits keep the main thread responsive to signals on every platform.
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


if __name__ == "__main__":
    sys.exit(main())
