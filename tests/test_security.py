"""The API key stays secret and stays home; nothing from an answer becomes a storage path.

- the key never appears in task logs, exceptions, XCom, manifests, written files or the metadata
  DB: a real DAG run (``dag.test()`` in a child process with its own ``AIRFLOW_HOME``) is searched;
- it is only ever sent to the configured host: redirects are not followed, a ``next`` cursor that
  looks like a URL goes back as ``page=`` to the configured host, plain http is refused off
  loopback, and TLS verification stays on;
- no value in an answer (a date, an id) reaches a file name.

Every server here listens on 127.0.0.1 on a free port.
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import json
import logging
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
from airflow.sdk import ObjectStoragePath
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_lucca.client import (
    REALIZED_TRAININGS_PATH,
    ClientConfig,
    LuccaClient,
    LuccaConfigError,
    LuccaError,
    LuccaRedirectError,
    LuccaResponseError,
    LuccaTLSError,
)
from airflow_provider_lucca.extraction.realized_trainings import (
    ExtractionRequest,
    extract_realized_trainings,
)
from airflow_provider_lucca.extraction.window import DateWindow
from airflow_provider_lucca.hooks.lucca import LuccaHook
from lucca_sandbox import FaultSchedule, SandboxConfig, SandboxServer
from tests.helpers import client_for, free_port

LOG = logging.getLogger("tests.security")
#: Unique per session, so that finding it anywhere can only mean it leaked from this run.
KEY = f"lucca-secret-{os.urandom(12).hex()}"
WINDOW = DateWindow(date(2025, 3, 1), date(2025, 3, 8))
#: The client of these tests: the key above, a 2 s read timeout, two quick attempts.
keyed_client = functools.partial(client_for, api_key=KEY, logger=LOG, timeout=2.0)


# --------------------------------------------------------------------------- loopback servers

Script = Callable[[str, dict[str, list[str]]], tuple[int, list[tuple[str, str]], bytes]]


class Recorder:
    """HTTP on 127.0.0.1 that records every connection and request it gets."""

    def __init__(self, script: Script | None = None) -> None:
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        self.script: Script = script or (lambda path, query: (200, [], b"stolen"))
        owner = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                owner.connections += 1
                return True

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                params = parse_qs(query, keep_blank_values=True)
                owner.requests.append(
                    {"path": path, "query": params, "headers": dict(self.headers.items())}
                )
                status, headers, body = owner.script(path, params)
                self.send_response(status)
                for name, value in [("Content-Type", "application/json"), *headers]:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_HEAD = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def trap() -> Iterator[Recorder]:
    """A second listener that nothing should ever reach."""
    recorder = Recorder()
    yield recorder
    recorder.stop()


@pytest.fixture
def keyed_sandbox() -> Iterator[SandboxServer]:
    with SandboxServer(SandboxConfig(records=2000, api_key=KEY)) as server:
        yield server


def page(items: list[dict[str, Any]], next_cursor: str | None = None) -> bytes:
    return json.dumps({"items": items, "next": next_cursor}).encode()


def record(number: int, day: str = "2025-03-02", **extra: Any) -> dict[str, Any]:
    return {"id": number, "ownerId": 7, "sessionEndsOn": day, "durationInHours": 2.0, **extra}


def extract(client: LuccaClient, root: Path, **options: Any) -> dict[str, Any]:
    request = ExtractionRequest(window=WINDOW, **options)
    return extract_realized_trainings(client, request, ObjectStoragePath(f"file://{root}"), log=LOG)


def files_under(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def exception_text(exc: BaseException) -> str:
    """Everything an exception shows when logged or reported: the formatted traceback of the
    whole chain, the repr and text of each exception in it, and the provider's own error
    attributes (status, path, title, detail, body excerpt)."""
    parts = ["".join(traceback.format_exception(exc))]
    seen: BaseException | None = exc
    while seen is not None:
        parts += [repr(seen), str(seen)]
        if isinstance(seen, LuccaError):
            parts.append(repr(vars(seen)))
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


# --------------------------------------------------------------------------- the key stays home


@pytest.mark.parametrize("at", [1, 2], ids=["first page", "later page"])
def test_sandbox_redirect_is_not_followed_and_nothing_reaches_the_other_host(
    keyed_sandbox: SandboxServer, trap: Recorder, tmp_path: Path, at: int
) -> None:
    keyed_sandbox.configure(redirect_url=trap.url, faults=FaultSchedule(at={at: "redirect"}))
    with (
        keyed_client(keyed_sandbox.url, page_size=20) as client,
        pytest.raises(LuccaRedirectError) as info,
    ):
        extract(client, tmp_path / "dataset")

    assert info.value.status == 302
    assert "not followed" in str(info.value)
    assert trap.url in str(info.value)  # says where it was sent
    assert trap.connections == 0
    assert trap.requests == []
    assert keyed_sandbox.stats()["by_status"].get("302") == 1
    assert KEY not in exception_text(info.value)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_no_redirect_status_is_followed(trap: Recorder, tmp_path: Path, status: int) -> None:
    server = Recorder(lambda path, query: (status, [("Location", f"{trap.url}/steal")], b""))
    try:
        with keyed_client(server.url) as client, pytest.raises(LuccaRedirectError):
            extract(client, tmp_path / "dataset")
    finally:
        server.stop()
    assert len(server.requests) == 1
    assert trap.connections == 0


@pytest.mark.parametrize(
    "cursor",
    ["{trap}/steal?page=2", "//127.0.0.1:{port}/steal", "{trap}", "/elsewhere?x=1"],
)
def test_next_cursor_that_looks_like_a_url_goes_back_only_as_page_to_the_configured_host(
    trap: Recorder, tmp_path: Path, cursor: str
) -> None:
    cursor = cursor.format(trap=trap.url, port=trap.httpd.server_port)

    def script(path: str, query: dict[str, list[str]]) -> tuple[int, list[tuple[str, str]], bytes]:
        if "page" not in query:
            return 200, [], page([record(1)], cursor)
        return 200, [], page([record(2)])

    server = Recorder(script)
    try:
        with keyed_client(server.url) as client:
            summary = extract(client, tmp_path / "dataset")
    finally:
        server.stop()

    assert summary["records"] == 2
    assert [request["path"] for request in server.requests] == [REALIZED_TRAININGS_PATH] * 2
    assert server.requests[1]["query"]["page"] == [cursor]
    host = server.url.removeprefix("http://")
    assert all(request["headers"]["Host"] == host for request in server.requests)
    assert trap.connections == 0


@pytest.mark.parametrize(
    "url",
    [
        "http://acme.ilucca.net",
        "http://acme.ilucca.net:80",
        "http://10.0.0.7:8089",
        "http://192.168.1.10",
        "http://127.0.0.1.nip.io:8089",
        "http://localhost.attacker.example",
        "HTTP://ACME.ILUCCA.NET",
    ],
)
def test_plain_http_is_refused_for_non_loopback_hosts(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(LuccaConfigError, match="plain http"):
        ClientConfig(base_url=url, api_key=KEY)
    # Through an Airflow connection too (the hook does not opt in to plain http by default).
    monkeypatch.setenv(
        "AIRFLOW_CONN_LUCCA_PLAIN",
        json.dumps({"conn_type": "lucca", "host": url, "password": KEY}),
    )
    with pytest.raises(LuccaConfigError, match="plain http") as info:
        LuccaHook("lucca_plain").client  # noqa: B018
    assert KEY not in exception_text(info.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.8.9.10"])
def test_plain_http_stays_allowed_on_loopback(host: str) -> None:
    assert ClientConfig(base_url=f"http://{host}:8089", api_key=KEY).base_url.startswith("http://")


# --------------------------------------------------------------------------- TLS verification


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate valid for 127.0.0.1 and localhost in every way but one: nobody trusts it."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private_key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class TLSRecorder:
    """HTTPS on 127.0.0.1: records connections, failed handshakes and every byte of requests."""

    def __init__(self, cert: Path, key: Path, *, cut_handshakes: int = 0) -> None:
        #: Connections closed during the handshake first (a load balancer restarting).
        self.cut_handshakes = cut_handshakes
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.connections = 0
        self.handshake_failures: list[str] = []
        self.received: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            if self.connections <= self.cut_handshakes:
                connection.recv(1024)  # the ClientHello, then no answer: the peer sees EOF
                connection.close()
                continue
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        try:
            with self.context.wrap_socket(connection, server_side=True) as tls:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = tls.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(data)
                body = page([])
                tls.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
        except (ssl.SSLError, OSError) as exc:
            self.handshake_failures.append(repr(exc))
        finally:
            connection.close()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        self.thread.join(timeout=5)


def test_tls_verification_stays_on_and_the_key_is_never_sent_to_an_untrusted_server(
    self_signed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # An environment that would switch verification off in a requests session trusting it.
    monkeypatch.setenv("CURL_CA_BUNDLE", "")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "")
    server = TLSRecorder(*self_signed)
    try:
        with (
            keyed_client(f"https://127.0.0.1:{server.port}") as client,
            pytest.raises(LuccaTLSError) as info,
        ):
            list(client.iter_realized_trainings())
        refused_connections = server.connections

        # Control: a client that trusts the certificate does get through, and is recorded.
        with keyed_client(f"https://127.0.0.1:{server.port}") as trusting:
            trusting.session.verify = str(self_signed[0])
            list(trusting.iter_realized_trainings())
    finally:
        server.stop()

    message = str(info.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message
    assert isinstance(info.value.__cause__, requests.exceptions.SSLError)
    assert refused_connections == 1  # not retried: a certificate does not heal by waiting
    assert len(server.handshake_failures) >= 1
    assert len(server.received) == 1, "only the trusting control client may send a request"
    assert f"lucca application={KEY}".encode() in server.received[0]


def test_a_handshake_cut_short_is_retried_not_taken_for_a_certificate_refusal(
    self_signed: tuple[Path, Path],
) -> None:
    """A server (or load balancer) closing during the handshake is a dropped connection: the
    next attempt gets through, and nothing fails the task for good as a TLS refusal would."""
    server = TLSRecorder(*self_signed, cut_handshakes=1)
    try:
        with keyed_client(f"https://127.0.0.1:{server.port}") as client:
            client.session.verify = str(self_signed[0])
            pages = list(client.iter_realized_trainings())
    finally:
        server.stop()
    assert [page.items for page in pages] == [[]]
    assert server.connections == 2
    assert len(server.received) == 1


# --------------------------------------------------------------------------- no leak anywhere


Build = Callable[[SandboxServer, Recorder], LuccaClient]


def failing_scenarios() -> dict[str, Build]:
    """Ways to fail, each a client (and server settings); ``spare`` is a second listener."""

    def sandbox_with(**changes: Any) -> Build:
        def build(sandbox: SandboxServer, spare: Recorder) -> LuccaClient:
            sandbox.configure(**{k: spare.url if v == "SPARE" else v for k, v in changes.items()})
            return keyed_client(sandbox.url, timeout=0.5)

        return build

    def echoing(status: int) -> Build:
        """A server (or proxy) that puts the request's Authorization header in its answer."""

        def build(sandbox: SandboxServer, spare: Recorder) -> LuccaClient:
            def script(path: str, query: Any) -> tuple[int, list[tuple[str, str]], bytes]:
                sent = spare.requests[-1]["headers"].get("Authorization", "")
                return status, [], f"<pre>Bad request; you sent: {sent}</pre>".encode()

            spare.script = script
            return keyed_client(spare.url)

        return build

    return {
        "wrong key (401)": lambda sandbox, spare: LuccaClient(
            ClientConfig(base_url=sandbox.url, api_key=KEY + "-revoked", requests_per_minute=0)
        ),
        "503 outlasting retries": sandbox_with(faults={"rate": 1.0, "kinds": ["503"]}),
        "dropped connections": sandbox_with(faults={"rate": 1.0, "kinds": ["drop"]}),
        "read timeout": sandbox_with(faults={"rate": 1.0, "kinds": ["slow"]}, slow_seconds=1.5),
        "Retry-After beyond the cap": sandbox_with(faults={"at": {"1": "429-long"}}),
        "redirect": sandbox_with(faults={"at": {"1": "redirect"}}, redirect_url="SPARE"),
        "HTML page with 200": sandbox_with(faults={"at": {"1": "html"}}),
        "connection refused": lambda sandbox, spare: keyed_client(
            f"http://127.0.0.1:{free_port()}"
        ),
        "server echoing the key in a 400 page": echoing(400),
        "server echoing the key in a 200 page": echoing(200),
    }


SCENARIOS = failing_scenarios()


@pytest.mark.parametrize("build", SCENARIOS.values(), ids=list(SCENARIOS))
def test_no_failure_shows_the_key_in_its_exception_or_logs(
    keyed_sandbox: SandboxServer,
    trap: Recorder,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    build: Build,
) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 and requests included
    with build(keyed_sandbox, trap) as client, pytest.raises(LuccaError) as info:
        extract(client, tmp_path / "dataset")
    assert KEY not in exception_text(info.value)
    assert KEY not in caplog.text
    assert files_under(tmp_path) == []
    assert KEY not in repr(client.config)
    assert KEY not in str(client.config)


# --------------------------------------------------------------------------- storage paths

PART = re.compile(r"part-\d{5}-[0-9a-f]{12}\.(jsonl\.gz|parquet)")
PARTITION = re.compile(r"session_end_on=\d{4}-\d{2}-\d{2}")


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
def test_ids_from_the_answer_never_become_paths(tmp_path: Path, file_format: str) -> None:
    hostile = [
        record(1),
        {**record(2), "id": "../x"},
        {**record(3), "id": "../../../../escaped"},
        {**record(4), "id": "/etc/passwd"},
        {**record(5, "2025-03-03"), "id": "a/b\\c\x00d"},
        {**record(6, "2025-03-03"), "training": {"id": 1, "title": "../../../x"}},
    ]
    server = Recorder(lambda path, query: (200, [], page(hostile)))
    root = tmp_path / "lake" / "dataset"
    try:
        with keyed_client(server.url) as client:
            summary = extract(client, root, file_format=file_format)
    finally:
        server.stop()

    assert summary["records"] == len(hostile)
    assert [path.name for path in tmp_path.iterdir()] == ["lake"]
    assert [path.name for path in (tmp_path / "lake").iterdir()] == ["dataset"]
    for path in root.rglob("*"):
        relative = path.relative_to(root).parts
        assert PARTITION.fullmatch(relative[0]), path
        if len(relative) == 2:
            assert relative[1] == "_manifest.json" or PART.fullmatch(relative[1]), path
        assert len(relative) <= 2, path


@pytest.mark.parametrize(
    "day",
    [
        "../../etc",
        "2025-03-02/../../../x",
        "..",
        "/etc/passwd",
        "2025-03-02\x00",
        "2025-03-02/x",
        "2025-03-02 ",
        "\\..\\..\\x",
    ],
)
def test_a_date_that_is_a_path_fails_the_run_and_writes_nothing(tmp_path: Path, day: str) -> None:
    server = Recorder(lambda path, query: (200, [], page([record(1), record(2, day)])))
    try:
        with keyed_client(server.url) as client, pytest.raises(LuccaResponseError) as info:
            extract(client, tmp_path / "lake" / "dataset")
    finally:
        server.stop()
    assert "sessionEndsOn" in str(info.value)
    assert list(tmp_path.rglob("*")) == []


# --------------------------------------------------------------------------- a real DAG run

DAG_FILE = '''
"""A tiny DAG for test_security.py: one run that succeeds, one refused by the API."""

from __future__ import annotations

import json

import pendulum
from airflow.sdk import DAG

from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator

with DAG(
    "lucca_security", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")
) as dag:
    RealizedTrainingsOperator(
        task_id="extract",
        lucca_conn_id="lucca_good",
        output_path={output!r},
        session_end_from="2025-03-01",
        session_end_until="2025-03-15",
    )
    RealizedTrainingsOperator(
        task_id="extract_refused",
        lucca_conn_id="lucca_refused",
        output_path={refused_output!r},
        session_end_from="2025-03-01",
        session_end_until="2025-03-15",
    )

if __name__ == "__main__":
    from airflow.models.xcom import XComModel
    from airflow.utils import db
    from airflow.utils.session import create_session

    db.initdb()
    run = dag.test()
    with create_session() as session:
        rows = session.query(XComModel).filter(
            XComModel.dag_id == dag.dag_id, XComModel.run_id == run.run_id
        )
        xcom = {{row.task_id: row.value for row in rows}}
    tasks = {{ti.task_id: str(ti.state) for ti in run.get_task_instances()}}
    print("LUCCA-TEST-RESULT " + json.dumps({{"tasks": tasks, "xcom": xcom}}, default=str))
'''


@pytest.mark.slow
def test_a_real_dag_run_never_writes_or_logs_the_key(
    keyed_sandbox: SandboxServer, tmp_path: Path
) -> None:
    """``dag.test()`` in a child with its own AIRFLOW_HOME; its output is the task logs."""
    refused_key = f"lucca-refused-{os.urandom(12).hex()}"
    home, dags, output = tmp_path / "airflow_home", tmp_path / "dags", tmp_path / "lake"
    dags.mkdir()
    dag_file = dags / "lucca_security.py"
    dag_file.write_text(
        DAG_FILE.format(output=f"file://{output}/good", refused_output=f"file://{output}/refused")
    )

    def connection(key: str) -> str:
        extra = {"requests_per_minute": 0, "max_retries": 0}
        return json.dumps(
            {"conn_type": "lucca", "host": keyed_sandbox.url, "password": key, "extra": extra}
        )

    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW_CONN_LUCCA_GOOD": connection(KEY),
        "AIRFLOW_CONN_LUCCA_REFUSED": connection(refused_key),
    }
    child = subprocess.run(
        [sys.executable, str(dag_file)],
        env=env,
        capture_output=True,
        timeout=240,
        check=False,
    )
    logs = child.stdout.decode("utf-8", "replace") + child.stderr.decode("utf-8", "replace")
    results = [line for line in logs.splitlines() if line.startswith("LUCCA-TEST-RESULT ")]
    assert child.returncode == 0, logs[-5000:]
    assert results, logs[-5000:]
    result = json.loads(results[-1].removeprefix("LUCCA-TEST-RESULT "))

    # The run happened as intended: one task extracted with the key, one was refused (401).
    assert result["tasks"] == {"extract": "success", "extract_refused": "failed"}
    summary = result["xcom"]["extract"]
    assert summary["records"] > 0
    assert keyed_sandbox.stats()["by_status"] == {"200": 1, "401": 1}
    assert "LuccaAuthError" in logs
    assert "HTTP 401" in logs  # the refused run's exception text is in the logs searched here

    # Nothing the run produced holds either key, not even masked (nothing tried to log it).
    assert KEY not in logs
    assert refused_key not in logs
    assert "***" not in logs
    assert KEY not in json.dumps(result["xcom"])
    produced = [path for path in (*home.rglob("*"), *output.rglob("*")) if path.is_file()]
    assert any(path.name == "_manifest.json" for path in produced)
    assert any(path.name.startswith("airflow.db") for path in produced)
    stored = b"".join(path.read_bytes() for path in produced)
    assert summary["run_token"].encode() in stored, "the search must cover where XCom is kept"
    for secret in (KEY, refused_key):
        assert secret.encode() not in stored
        assert secret.encode("utf-16-le") not in stored
