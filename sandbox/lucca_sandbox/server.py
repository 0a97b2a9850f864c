"""HTTP emulator of Lucca's ``GET /talent-training/api/v2/realized-trainings``: the facade.

The extraction code must be proven against the things a real tenant does to it (cursors,
``fields.root``, strict query validation, a shared per-tenant rate limit, the unknown reading
of the date bounds, gateway errors, dropped connections...) without a Lucca account. The
sandbox is a real HTTP/1.1 server (standard library only, no Airflow) so the same sandbox
serves unit tests in-process, the demo and the benchmark on loopback, and docker-compose.

Everything that can fail is deterministic: data from a seed, faults from the API request
number (see :mod:`.faults`), so a failing run can be replayed exactly.

:class:`SandboxServer` is all this module holds; the work is done by

- :mod:`.config`: :class:`SandboxConfig` and the validation of every setting;
- :mod:`.query`: query-string validation, filters, opaque cursors, the page payload;
- :mod:`.ratelimit`: the tenant's sliding-window rate limit;
- :mod:`.requestlog`: when each API request arrived and what it got (``GET /_sandbox/requests``);
- :mod:`.state`: the dataset, filter cache, counters, scheduled moves, runtime changes;
- :mod:`.mutations`: seeded late imports, deletions and attendance flips of old history;
- :mod:`.timeouts`: which requests get Lucca's 408 "send a simpler request";
- :mod:`.handler`: the HTTP server and request handler (API, faults, admin endpoints).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from .config import BOUNDS, DEFAULT_API_KEY, ORDERS, SandboxConfig
from .handler import API_PATH, SandboxHTTPServer, connect_host
from .ratelimit import RateLimiter
from .state import SandboxState

__all__ = [
    "API_PATH",
    "BOUNDS",
    "DEFAULT_API_KEY",
    "ORDERS",
    "RateLimiter",
    "SandboxConfig",
    "SandboxServer",
]


class SandboxServer:
    """In-process Lucca sandbox serving from a daemon thread.

    Use it as a context manager in tests (``with SandboxServer(cfg) as server``) or call
    :meth:`start` / :meth:`stop`. The dataset is generated in the constructor, so
    :attr:`records` is available before the server listens.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._state = SandboxState(config or SandboxConfig())
        self._httpd: SandboxHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> SandboxServer:
        """Bind the socket and serve in a daemon thread; idempotent."""
        if self._httpd is not None:
            return self
        cfg = self._state.config
        host = cfg.host.strip("[]")
        httpd = SandboxHTTPServer((host, cfg.port), self._state, ipv6=":" in host)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"lucca-sandbox-{httpd.server_port}",
            daemon=True,
        )
        thread.start()
        self._httpd, self._thread = httpd, thread
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections and close the listening socket; idempotent."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def host(self) -> str:
        """The configured bind host (may be a wildcard such as 0.0.0.0)."""
        return self._state.config.host

    @property
    def port(self) -> int:
        """The bound port (the OS-chosen one when the config says 0)."""
        if self._httpd is None:
            raise RuntimeError("the sandbox is not running")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Base URL reachable from this host, e.g. ``http://127.0.0.1:8089``."""
        return f"http://{connect_host(self.host.strip('[]'))}:{self.port}"

    @property
    def api_url(self) -> str:
        """Full URL of the realized-trainings endpoint."""
        return self.url + API_PATH

    @property
    def config(self) -> SandboxConfig:
        """Current settings (reflects :meth:`configure`)."""
        return self._state.config

    @property
    def admin_token(self) -> str:
        """Token of the mutating admin endpoints (``Authorization: Bearer <token>``).

        The configured ``admin_token``, or the random one generated when it was None.
        :meth:`configure` and :meth:`reset_stats` need none: they do not go through HTTP.
        """
        return self._state.admin_token

    # -- data and tooling

    @property
    def records(self) -> list[dict[str, Any]]:
        """The current dataset in id order, scheduled moves included (whatever the API order).

        Read-only: records share their training dicts, and a move replaces the list and the
        moved record instead of changing them, so a list read earlier stays as it was.
        """
        return self._state.records

    def stats(self) -> dict[str, Any]:
        """Same payload as ``GET /_sandbox/stats``."""
        return self._state.stats()

    def request_log(self) -> dict[str, Any]:
        """Same payload as ``GET /_sandbox/requests``: ``{"requests": [...], "dropped": n}``.

        Every API request answered since the start or the last reset, in arrival order, as
        ``{"at": time.time() on arrival, "status": int (None: connection dropped), "path",
        "query"}``; admin requests are not in it. The last 100,000 are kept, ``dropped`` counts
        the older ones.
        """
        return self._state.request_log.snapshot()

    def reset_stats(self) -> None:
        """Same as ``POST /_sandbox/reset-stats``: counters, fault/move numbering, rate window,
        request log."""
        self._state.reset_stats()

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Same keys as ``POST /_sandbox/config``; returns the effective settings.

        ``faults`` may be a :class:`FaultSchedule`, its dict shape or None; ``moves`` a list of
        :class:`RecordMove` or their dict shape (``{"id", "to", "after_request", "every"}``);
        ``start`` and ``end`` may be dates or ``YYYY-MM-DD`` strings. Raises ValueError on
        invalid input, leaving the sandbox unchanged.
        """
        return self._state.configure(changes)

    def mutate(self, **body: Any) -> list[dict[str, Any]]:
        """Same body as ``POST /_sandbox/mutate``; returns the changes (its ``changes`` list).

        Keys: ``seed`` (int, default 0), ``inserts``, ``deletions``, ``flips`` (counts, default
        0), ``from`` / ``until`` (the half-open range of ``sessionEndsOn`` the counts draw from,
        dates or ``YYYY-MM-DD``; default the dataset's ``start .. end + 1 day``), ``delete_ids``
        and ``flip_ids`` (explicit records, anywhere). ``from_`` is accepted for ``from``, a
        Python keyword. Each change is ``{"kind": "delete" | "flip" | "insert", "id",
        "sessionEndsOn", "hasAttended"}`` (after the change; a deletion's as it was). Same seed
        and same dataset, same changes. Raises ValueError on an invalid body, leaving the data
        unchanged.
        """
        if "from_" in body:
            if "from" in body:
                raise ValueError("mutate: give 'from' or 'from_', not both")
            body["from"] = body.pop("from_")
        return self._state.mutate(body)
