"""A fault-injecting HTTP proxy in front of the moto S3 server, for storage failure tests.

Every request is forwarded to moto unchanged, unless the proxy's ``rule`` decides to fail it: it
then answers an S3 error (``AccessDenied``, which botocore does not retry: a revoked permission, a
bucket policy) or drops the connection. The rule sees each request's method and key, so a test
can fail "every write from the third manifest PUT on", like a store that goes away mid-commit.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

#: (method, path) -> None to forward, "deny" for a 403 AccessDenied, "drop" to close the socket.
Rule = Callable[[str, str], str | None]

_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
    b"<Message>Access Denied (injected)</Message></Error>"
)


class S3FaultProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = urlsplit(upstream)
        self.rule: Rule = lambda method, path: None
        self.log: list[tuple[str, str, str]] = []  # (method, path, "ok" / "deny" / "drop")
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size_line = self.rfile.readline()
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            # trailers until the empty line
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            break
                        chunks.append(chunk)
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                with proxy._lock:
                    verdict = proxy.rule(self.command, self.path)
                    proxy.log.append((self.command, self.path, verdict or "ok"))
                if verdict == "drop":
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if verdict == "deny":
                    self._reply(403, [("Content-Type", "application/xml")], _DENIED)
                    return
                headers = {
                    key: value
                    for key, value in self.headers.items()
                    if key.lower() not in ("transfer-encoding", "connection", "content-length")
                }
                upstream = http.client.HTTPConnection(
                    proxy.upstream.hostname, proxy.upstream.port, timeout=30
                )
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    # A HEAD answer's Content-Length is the object's size: keep it as sent.
                    skip = ("transfer-encoding", "connection")
                    if self.command != "HEAD":
                        skip += ("content-length",)
                    self._reply(
                        response.status,
                        [(k, v) for k, v in response.getheaders() if k.lower() not in skip],
                        data,
                    )
                finally:
                    upstream.close()

            def _reply(self, status: int, headers: list[tuple[str, str]], data: bytes) -> None:
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                if not any(key.lower() == "content-length" for key, _ in headers):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> S3FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
