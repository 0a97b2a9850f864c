"""Run the sandbox in its own process, for the demo, the local Airflow stack and benchmarks.

A separate process keeps the emulator's CPU off the measured client's interpreter, and it is the
same command docker-compose runs. The caller gets a URL once the server listens, and the process
is stopped by PID on exit, whatever happened. The admin token is chosen here (or read from
``--admin-token`` in the flags) and handed over in the environment, not on the command line, so
:meth:`SandboxProcess.admin` can reconfigure the sandbox.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from types import TracebackType
from typing import Any

READY_TIMEOUT = 60.0


class SandboxProcess:
    """``python -m lucca_sandbox --port 0 ...`` on loopback.

    :param args: extra command-line flags (``["--records", "5000"]``).
    :param log_path: where the sandbox's output goes (default: discarded).
    :param admin_token: token of the admin endpoints; default: the ``--admin-token`` of
        ``args`` if any, else a random one. Read it back from :attr:`admin_token`.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        *,
        log_path: str | None = None,
        admin_token: str | None = None,
    ) -> None:
        self.args = list(args or [])
        self.log_path = log_path
        self.admin_token: str = (
            admin_token or _flag_value(self.args, "--admin-token") or secrets.token_urlsafe(32)
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> SandboxProcess:
        with tempfile.TemporaryDirectory(prefix="lucca-sandbox-") as workdir:
            port_file = os.path.join(workdir, "port")
            command = [sys.executable, "-m", "lucca_sandbox"]
            command += ["--host", "127.0.0.1", "--port", "0", "--port-file", port_file, *self.args]
            # A --admin-token in args wins over the environment; it is the same token then.
            env = {**os.environ, "LUCCA_SANDBOX_ADMIN_TOKEN": self.admin_token}
            with open(self.log_path or os.devnull, "ab") as log:
                self.process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            deadline = time.monotonic() + READY_TIMEOUT
            while not os.path.exists(port_file):
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"The sandbox exited with code {self.process.returncode} before listening"
                        + (f"; see {self.log_path}" if self.log_path else "")
                    )
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"The sandbox did not listen within {READY_TIMEOUT:.0f} s")
                time.sleep(0.05)
            with open(port_file) as handle:
                self.url = f"http://127.0.0.1:{int(handle.read().strip())}"
        return self

    def admin(self, name: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Call ``/_sandbox/<name>`` (GET, or POST with a JSON payload) with the admin token."""
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{name}",
            data=data,
            method="GET" if data is None else "POST",
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {self.admin_token}",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            result: dict[str, Any] = json.load(response)
            return result

    def stats(self) -> dict[str, Any]:
        return self.admin("stats")

    def mutate(self, **body: Any) -> list[dict[str, Any]]:
        """``POST /_sandbox/mutate``: same keys and answer as :meth:`SandboxServer.mutate`.

        Raises ValueError with the sandbox's message when it refuses the body (400).
        """
        if "from_" in body:
            if "from" in body:
                raise ValueError("mutate: give 'from' or 'from_', not both")
            body["from"] = body.pop("from_")
        for name in ("from", "until"):
            if hasattr(body.get(name), "isoformat"):
                body[name] = body[name].isoformat()
        try:
            changes: list[dict[str, Any]] = self.admin("mutate", body)["changes"]
        except urllib.error.HTTPError as error:
            if error.code != 400:
                raise
            with error:
                detail = json.load(error).get("detail", "")
            raise ValueError(detail) from None
        return changes

    def request_log(self) -> dict[str, Any]:
        """``GET /_sandbox/requests``: ``{"requests": [...], "dropped": n}`` (see SandboxServer)."""
        return self.admin("requests")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def __enter__(self) -> SandboxProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _flag_value(args: list[str], flag: str) -> str | None:
    """The last value given to ``flag`` in ``args`` (``--flag V`` or ``--flag=V``), as argparse."""
    value: str | None = None
    for index, word in enumerate(args):
        if word == flag and index + 1 < len(args):
            value = args[index + 1]
        elif word.startswith(flag + "="):
            value = word[len(flag) + 1 :]
    return value
