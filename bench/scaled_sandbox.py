"""The sandbox with its rate limiter's window shortened (``python -m bench.scaled_sandbox``).

Lucca's limit is "50 requests in any 60 s". A benchmark that wants a peer to meet it without
spending minutes keeps the 50 and shortens the window (the tests do the same in-process, through
``lucca_sandbox.ratelimit._RATE_WINDOW``). The window's length comes from
``$LUCCA_BENCH_RATE_WINDOW`` (seconds); every other flag is the sandbox's own.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lucca_sandbox.process import READY_TIMEOUT, SandboxProcess

WINDOW_ENV = "LUCCA_BENCH_RATE_WINDOW"
ROOT = Path(__file__).resolve().parents[1]


class ScaledSandboxProcess(SandboxProcess):
    """:class:`SandboxProcess`, started through this module with a window of ``seconds``."""

    def __init__(self, args: list[str], seconds: float) -> None:
        super().__init__(args)
        self.seconds = seconds

    def start(self) -> ScaledSandboxProcess:
        # SandboxProcess.start with another module to run; stopped by PID like it (stop()).
        with tempfile.TemporaryDirectory(prefix="lucca-sandbox-") as workdir:
            port_file = os.path.join(workdir, "port")
            command = [sys.executable, "-m", "bench.scaled_sandbox"]
            command += ["--host", "127.0.0.1", "--port", "0", "--port-file", port_file, *self.args]
            env = {
                **os.environ,
                "LUCCA_SANDBOX_ADMIN_TOKEN": self.admin_token,
                WINDOW_ENV: str(self.seconds),
            }
            self.process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT
            )
            deadline = time.monotonic() + READY_TIMEOUT
            while not os.path.exists(port_file):
                if self.process.poll() is not None:
                    raise RuntimeError(f"The scaled sandbox exited ({self.process.returncode})")
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("The scaled sandbox did not listen in time")
                time.sleep(0.05)
            with open(port_file) as handle:
                self.url = f"http://127.0.0.1:{int(handle.read().strip())}"
        return self


def main() -> None:
    import lucca_sandbox.ratelimit

    lucca_sandbox.ratelimit._RATE_WINDOW = float(os.environ[WINDOW_ENV])
    runpy.run_module("lucca_sandbox", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
