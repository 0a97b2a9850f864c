"""The HTTP layer: the threading server, and the handler that answers the API and admin paths.

Every request method goes through one dispatch, so whatever a client sends is answered in
``application/problem+json`` (a method other than GET on the API path: 405 with ``Allow: GET``),
never with ``http.server``'s 501 HTML page. The query, the data and the counters live elsewhere
(:mod:`.query`, :mod:`.state`); faults are played here because they are about the wire.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import math
import re
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Sequence
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any, cast

from .query import PageRequest, QueryError, page_payload, parse_query
from .state import SandboxState
from .timeouts import timeout_detail

__all__ = ["API_PATH", "SandboxHTTPServer", "SandboxHandler", "connect_host"]

API_PATH = "/talent-training/api/v2/realized-trainings"
ADMIN_PREFIX = "/_sandbox/"

_MAX_ADMIN_BODY = 256 * 1024 * 1024
_INT_RE = re.compile(r"[0-9]+")

_HTML_ERROR_PAGE = (
    '<!DOCTYPE html>\n<html lang="fr"><head><meta charset="utf-8">'
    "<title>Maintenance en cours</title></head>\n<body><h1>Service temporairement "
    "indisponible</h1><p>Lucca est en cours de maintenance. Merci de réessayer dans "
    "quelques instants.</p></body></html>\n"
).encode()


class ProblemError(Exception):
    """An error answered as ``application/problem+json``."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str = "",
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.headers = tuple(headers)


def connect_host(host: str) -> str:
    """Host to reach a server bound on ``host`` (wildcards mean loopback for local tools)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _format_host_port(server: Any) -> str:
    host, port = server.server_address[:2]
    host = connect_host(str(host))
    return f"{host}:{port}"


class SandboxHTTPServer(ThreadingHTTPServer):
    """Threading server that does not wait for idle keep-alive clients when closing."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], state: SandboxState, ipv6: bool) -> None:
        self.address_family = socket.AF_INET6 if ipv6 else socket.AF_INET
        self.state = state
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, SandboxHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) that can stall for
        # seconds on hosts without DNS; the sandbox does not need a server name.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            return  # the client went away; nothing to report
        super().handle_error(request, client_address)

    def close_connections(self) -> None:
        """Unblock handler threads waiting on idle keep-alive sockets."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class SandboxHandler(BaseHTTPRequestHandler):
    """One connection; dispatches API requests and the ``/_sandbox/`` admin endpoints."""

    protocol_version = "HTTP/1.1"
    server_version = "LuccaSandbox/0.1"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 120

    def version_string(self) -> str:
        return self.server_version

    @property
    def sandbox(self) -> SandboxHTTPServer:
        return cast(SandboxHTTPServer, self.server)

    def setup(self) -> None:
        super().setup()
        with self.sandbox.connections_lock:
            self.sandbox.connections.add(self.connection)

    def finish(self) -> None:
        with self.sandbox.connections_lock:
            self.sandbox.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        if self.sandbox.state.config.verbose:
            super().log_message(format, *args)

    # -- responses

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: Iterable[tuple[str, str]] = (),
        api: bool = True,
    ) -> None:
        if api:
            # Count before writing: a client that has read the answer sees it in the stats.
            self.sandbox.state.count_status(status)
            self._log(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _log(self, status: int | None) -> None:
        path, _, query = self.path.partition("?")
        self.sandbox.state.request_log.record(
            self._arrival, status, API_PATH if path == API_PATH else path, query
        )

    def _send_json(self, status: int, payload: object, api: bool = False) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        self._send(status, body, "application/json; charset=utf-8", api=api)

    def _send_problem(
        self,
        status: int,
        detail: str,
        slug: str = "",
        headers: Iterable[tuple[str, str]] = (),
        api: bool = True,
    ) -> None:
        phrase = HTTPStatus(status).phrase
        problem = {
            "type": f"urn:lucca-sandbox:problem:{slug or phrase.lower().replace(' ', '-')}",
            "title": phrase,
            "status": status,
            "detail": detail,
        }
        body = json.dumps(problem, ensure_ascii=False).encode()
        self._send(status, body, "application/problem+json", headers, api=api)

    # -- dispatch: every method, so that none gets http.server's 501 HTML page

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET
    do_OPTIONS = do_TRACE = do_CONNECT = do_GET

    def parse_request(self) -> bool:
        """Also dispatch extension methods (``PROPFIND``, ``QUERY``...), which have no do_*."""
        if not super().parse_request():
            return False
        if hasattr(self, "do_" + self.command):
            return True
        self._dispatch()
        return False  # answered: handle_one_request has nothing left to do

    def _read_body(self) -> bytes:
        length_header = self.headers.get("Content-Length")
        if not length_header:
            return b""
        if not _INT_RE.fullmatch(length_header.strip()):
            raise ProblemError(400, "Invalid Content-Length.")
        length = int(length_header)
        if length > _MAX_ADMIN_BODY:
            self.close_connection = True
            raise ProblemError(413, "Request body too large.")
        return self.rfile.read(length)

    def _dispatch(self) -> None:
        path, _, query = self.path.partition("?")
        admin = path.startswith(ADMIN_PREFIX)
        self._ticket: tuple[int, int] | None = None
        if not admin:
            self._arrival = self.sandbox.state.request_log.arrive()
        try:
            if admin and self.command != "GET":
                # Before reading the body: an unauthenticated client uploads nothing.
                self._authorize_admin()
            body = self._read_body()
            if admin:
                self._admin(path, body)
            else:
                self._api(path, query)
        except ProblemError as error:
            self._send_problem(error.status, error.detail, error.slug, error.headers, api=not admin)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            traceback.print_exc(file=sys.stderr)
            self._send_problem(500, "Unexpected sandbox error (see its stderr).", api=not admin)
        finally:
            if self._ticket is not None:
                self.sandbox.state.end_api_request(*self._ticket)

    def _authorize_admin(self) -> None:
        """Require ``Authorization: Bearer <admin token>`` (compared in constant time)."""
        scheme, _, credentials = (self.headers.get("Authorization") or "").partition(" ")
        expected = self.sandbox.state.admin_token.encode()
        # Header values are decoded as latin-1 by http.server: encoding back gives the bytes.
        given = credentials.strip().encode("latin-1", "replace")
        if scheme.lower() == "bearer" and hmac.compare_digest(given, expected):
            return
        self.close_connection = True  # the body, if any, is left unread
        raise ProblemError(
            401,
            "Missing or invalid admin token: send 'Authorization: Bearer <admin token>' "
            "(see --admin-token / LUCCA_SANDBOX_ADMIN_TOKEN, or the token printed at start).",
            headers=[("WWW-Authenticate", 'Bearer realm="lucca-sandbox"'), ("Connection", "close")],
        )

    # -- API

    def _api(self, path: str, query: str) -> None:
        state = self.sandbox.state
        epoch, number, fault = state.begin_api_request()
        self._ticket = (epoch, number)
        if fault is not None and self._fault(fault):
            return
        retry_after = state.limiter.admit()
        if retry_after is not None:
            self._send_problem(
                429,
                "Rate limit exceeded for this tenant; respect Retry-After.",
                "rate-limited",
                [("Retry-After", str(retry_after))],
            )
            return
        if path != API_PATH:
            raise ProblemError(404, "No such endpoint in the Lucca sandbox.")
        if self.command != "GET":
            self._send_problem(405, "Only GET is supported here.", headers=[("Allow", "GET")])
            return
        expected = "lucca application=" + state.config.api_key
        if self.headers.get("Authorization") != expected:
            raise ProblemError(
                401,
                "Missing or invalid API key: send 'Authorization: lucca application=<api_key>'.",
            )
        try:
            request = parse_query(query)
        except QueryError as error:
            raise ProblemError(400, str(error), "invalid-query") from None
        self._serve_page(request)

    def _serve_page(self, request: PageRequest) -> None:
        state = self.sandbox.state
        config = state.config
        matching: list[dict[str, Any]] | None = None

        def count() -> int:
            nonlocal matching
            matching = state.matching(request.filters)
            return len(matching)

        detail = timeout_detail(config, request.filters, count)
        if detail is not None:
            if config.timeout_delay_seconds:
                time.sleep(config.timeout_delay_seconds)  # Lucca answers after its 5 s
            self._send_problem(408, detail, "request-timeout")
            return
        if matching is None:
            matching = state.matching(request.filters)
        self._send_json(200, page_payload(matching, request), api=True)

    def _fault(self, kind: str) -> bool:
        """Play fault ``kind``; return True when the response has been handled."""
        config = self.sandbox.state.config
        if kind == "drop":
            self._log(None)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if kind == "slow":
            time.sleep(config.slow_seconds)
            return False
        if kind == "html":
            self._send(200, _HTML_ERROR_PAGE, "text/html; charset=utf-8")
            return True
        if kind == "redirect":
            base = config.redirect_url
            if base is None:
                base = "http://" + (self.headers.get("Host") or _format_host_port(self.server))
            self._send(302, b"", "text/plain; charset=utf-8", [("Location", base + self.path)])
            return True
        if kind.startswith("429"):
            headers: list[tuple[str, str]] = []
            if kind == "429":
                headers.append(("Retry-After", "1"))
            elif kind == "429-long":
                headers.append(("Retry-After", "3600"))
            elif kind == "429-date":
                headers.append(("Retry-After", formatdate(math.ceil(time.time()) + 2, usegmt=True)))
            self._send_problem(429, "Too many requests (injected fault).", "rate-limited", headers)
            return True
        status = int(kind)
        self._send_problem(status, f"Injected fault: {HTTPStatus(status).phrase}.", "injected")
        return True

    # -- admin

    def _admin(self, path: str, body: bytes) -> None:
        state = self.sandbox.state
        route = (self.command, path.rstrip("/"))
        if route == ("GET", "/_sandbox/health"):
            self._send_json(200, {"status": "ok"})
        elif route == ("GET", "/_sandbox/stats"):
            self._send_json(200, state.stats())
        elif route == ("GET", "/_sandbox/requests"):
            self._send_json(200, state.request_log.snapshot())
        elif route == ("POST", "/_sandbox/reset-stats"):
            state.reset_stats()
            self._send_json(200, state.stats())
        elif route == ("POST", "/_sandbox/mutate"):
            try:
                self._send_json(200, {"changes": state.mutate(self._json_object(body))})
            except ValueError as error:
                raise ProblemError(400, str(error), "invalid-mutation") from None
        elif route == ("GET", "/_sandbox/config"):
            self._send_json(200, state.describe())
        elif route == ("POST", "/_sandbox/config"):
            changes = self._json_object(body)
            try:
                self._send_json(200, state.configure(changes))
            except ValueError as error:
                raise ProblemError(400, str(error), "invalid-config") from None
        else:
            raise ProblemError(404, "Unknown sandbox admin endpoint.")

    @staticmethod
    def _json_object(body: bytes) -> dict[str, Any]:
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise ProblemError(400, "The body must be a JSON object.") from None
        if not isinstance(value, dict):
            raise ProblemError(400, "The body must be a JSON object.")
        return value
