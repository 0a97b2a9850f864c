"""`make test-install`: the wheel installs into a stock Airflow the way a data engineer installs it.

1. build the wheel (``uv build``);
2. write a constraints file from ``uv.lock`` (every locked package of the provider and its extras,
   Airflow included, minus the project and the workspace sandbox): the stand-in for Airflow's own
   constraints file, which cannot be downloaded here;
3. a fresh venv with plain ``python3 -m venv``; ``pip install apache-airflow==3.3.2`` with those
   constraints, as a deployment already has it;
4. ``pip install '<wheel>[s3,parquet,delta,iceberg,redis]'`` with the same constraints, under a time
   limit (pip backtracking for minutes is the failure this guards);
5. ``airflow providers list`` shows airflow-provider-lucca at the package's version, the operator
   imports, ``pip check`` finds nothing broken, and the installed metadata holds the provider
   classifier, the project URLs, the licence and the extras.

Exits non-zero with a one-line reason (and the tail of the failing command's log) on any failure;
prints the measured times. ``--no-constraints`` instead times step 4 without a constraints file
(with ``--extra-requirement`` for floors to try): PyPI's state decides that one, so CI does not
run it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"
EXTRAS = ("s3", "parquet", "delta", "iceberg", "redis")
AIRFLOW = "3.3.2"
# What the resolve of the provider and its extras may take (measured: see README "Installing into
# your Airflow"); backtracking pip takes 15 minutes and more.
TIME_LIMIT = 300.0
PROJECT_URLS = {"Homepage", "Documentation", "Changelog", "Source", "Issues"}


class CheckFailed(Exception):
    """A step of the user's path failed: the message says which and why."""


def version() -> str:
    text = (ROOT / "airflow_provider_lucca" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, flags=re.MULTILINE)
    assert match is not None
    return match.group(1)


def run(
    command: Sequence[str | Path],
    log: Path,
    *,
    timeout: float,
    env: dict[str, str] | None = None,
    what: str,
) -> tuple[str, float]:
    """Run ``command`` with its output in ``log``; its output and duration, or CheckFailed."""
    started = time.monotonic()
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(part) for part in command],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise CheckFailed(
                f"{what}: still running after {timeout:.0f} s (pip backtracking?), stopped.\n"
                + tail(log)
            ) from None
    elapsed = time.monotonic() - started
    output = log.read_text(errors="replace")
    if code != 0:
        raise CheckFailed(f"{what}: exit {code} after {elapsed:.0f} s.\n" + tail(log))
    return output, elapsed


def tail(log: Path, lines: int = 25) -> str:
    # pip's warnings about this machine's unreachable extra indexes say nothing about the failure.
    kept = [
        line
        for line in log.read_text(errors="replace").splitlines()
        if "is ignored: it is neither a file nor a directory" not in line
    ]
    return f"--- last lines of {log} ---\n" + "\n".join(kept[-lines:])


def build_wheel(out: Path, log_dir: Path) -> Path:
    run(
        [UV, "build", "--wheel", "--out-dir", out, ROOT],
        log_dir / "build.log",
        timeout=240,
        what="uv build --wheel",
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def lock_constraints(path: Path, log_dir: Path) -> int:
    """Pins of every package the provider and its extras lock, Airflow included (count)."""
    command: list[str | Path] = [
        UV,
        "export",
        "--frozen",
        "--no-hashes",
        "--format",
        "requirements-txt",
        "--no-default-groups",
        "--no-emit-project",
        "--no-emit-workspace",
        "--no-header",
        "--no-annotate",
        "--output-file",
        path,
    ]
    for extra in EXTRAS:
        command += ["--extra", extra]
    run(command, log_dir / "export.log", timeout=120, what="uv export (constraints from uv.lock)")
    pins = [line for line in path.read_text().splitlines() if "==" in line]
    if not any(line.startswith(f"apache-airflow=={AIRFLOW}") for line in pins):
        raise CheckFailed(f"uv.lock does not pin apache-airflow=={AIRFLOW}: see {path}")
    if any(line.startswith(("airflow-provider-lucca", "lucca-sandbox", "-e")) for line in pins):
        raise CheckFailed(f"the constraints name the project or the sandbox: see {path}")
    return len(pins)


def pip_env(home: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHON"))
    }
    env |= {
        "AIRFLOW_HOME": str(home),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    return env


INSPECT = """
import json, sys
from importlib.metadata import metadata, version
meta = metadata("airflow-provider-lucca")
from airflow_provider_lucca.operators.realized_trainings import RealizedTrainingsOperator
print(json.dumps({
    "version": meta["Version"],
    "classifiers": meta.get_all("Classifier") or [],
    "urls": [u.split(", ", 1)[0] for u in meta.get_all("Project-URL") or []],
    "license": meta["License-Expression"],
    "license_files": meta.get_all("License-File") or [],
    "extras": meta.get_all("Provides-Extra") or [],
    "airflow": version("apache-airflow"),
    "operator": RealizedTrainingsOperator.__module__,
}))
"""


def check_installed(python: Path, env: dict[str, str], log_dir: Path, expected: str) -> float:
    import json

    output, elapsed = run(
        [python, "-c", INSPECT],
        log_dir / "inspect.log",
        timeout=120,
        env=env,
        what="import the operator and read the installed metadata",
    )
    facts = json.loads(output.strip().splitlines()[-1])
    problems = []
    if facts["version"] != expected:
        problems.append(f"version {facts['version']}, expected {expected}")
    if facts["airflow"] != AIRFLOW:
        problems.append(f"pip changed Airflow to {facts['airflow']}")
    if "Framework :: Apache Airflow :: Provider" not in facts["classifiers"]:
        problems.append("no 'Framework :: Apache Airflow :: Provider' classifier")
    if set(facts["urls"]) != PROJECT_URLS:
        problems.append(f"project URLs {sorted(facts['urls'])}, expected {sorted(PROJECT_URLS)}")
    if facts["license"] != "Apache-2.0" or facts["license_files"] != ["LICENSE"]:
        problems.append(f"licence {facts['license']} {facts['license_files']}")
    missing = set(EXTRAS) - set(facts["extras"])
    if missing:
        problems.append(f"extras missing: {sorted(missing)}")
    if problems:
        raise CheckFailed("installed metadata: " + "; ".join(problems))
    return elapsed


def check_providers_list(venv: Path, env: dict[str, str], log_dir: Path, expected: str) -> float:
    output, elapsed = run(
        [venv / "bin" / "airflow", "providers", "list"],
        log_dir / "providers.log",
        timeout=180,
        env=env,
        what="airflow providers list",
    )
    lines = [line for line in output.splitlines() if "airflow-provider-lucca" in line]
    if not lines:
        raise CheckFailed("airflow providers list does not show airflow-provider-lucca.\n" + output)
    if not any(re.search(rf"\b{re.escape(expected)}\b", line) for line in lines):
        raise CheckFailed(f"airflow providers list shows {lines!r}, not version {expected}")
    print(f"    {lines[0].strip()}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3", help="interpreter of the fresh venv")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT)
    parser.add_argument("--wheel", type=Path, help="a built wheel (default: build one)")
    parser.add_argument("--keep", action="store_true", help="keep the venv and logs")
    parser.add_argument("--no-cache", action="store_true", help="pip without its cache")
    parser.add_argument(
        "--no-constraints",
        action="store_true",
        help="time the provider's install without constraints (Airflow still constrained)",
    )
    parser.add_argument(
        "--extra-requirement",
        action="append",
        default=[],
        help="another requirement beside the wheel (floors to try with --no-constraints)",
    )
    args = parser.parse_args(argv)
    expected = version()
    work = Path(tempfile.mkdtemp(prefix="lucca-install-"))
    logs = work / "logs"
    logs.mkdir()
    started = time.monotonic()
    try:
        wheel = args.wheel or build_wheel(work / "dist", logs)
        print(f"==> Wheel: {wheel.name}")
        constraints = work / "constraints.txt"
        pins = lock_constraints(constraints, logs)
        print(f"==> Constraints from uv.lock: {pins} pins ({constraints.name})")

        venv = work / "venv"
        python = shutil.which(args.python) or args.python
        run([python, "-m", "venv", venv], logs / "venv.log", timeout=120, what="python3 -m venv")
        pip = [venv / "bin" / "python", "-m", "pip", "install"]
        if args.no_cache:
            pip.append("--no-cache-dir")
        env = pip_env(work / "airflow_home")
        pip_version, _ = run(
            [venv / "bin" / "python", "-m", "pip", "--version"],
            logs / "pip-version.log",
            timeout=60,
            env=env,
            what="pip --version",
        )
        print(f"==> Fresh venv: {pip_version.split(' from ')[0]}")

        _, airflow_time = run(
            [*pip, "--constraint", constraints, f"apache-airflow=={AIRFLOW}"],
            logs / "pip-airflow.log",
            timeout=900,
            env=env,
            what=f"pip install apache-airflow=={AIRFLOW}",
        )
        print(f"==> Stock Airflow {AIRFLOW} installed in {airflow_time:.0f} s")

        target = f"{wheel}[{','.join(EXTRAS)}]"
        if args.no_constraints:
            # Airflow stays what the deployment has; the provider's own tree is resolved freely.
            command = [*pip, target, f"apache-airflow=={AIRFLOW}", *args.extra_requirement]
            how = "without constraints"
        else:
            command = [*pip, "--constraint", constraints, target, *args.extra_requirement]
            how = "with the constraints"
        _, provider_time = run(
            command,
            logs / "pip-provider.log",
            timeout=args.time_limit,
            env=env,
            what=f"pip install '{wheel.name}[{','.join(EXTRAS)}]' {how}",
        )
        print(
            f"==> Provider with [{','.join(EXTRAS)}] installed {how} in {provider_time:.0f} s "
            f"(limit {args.time_limit:.0f} s)"
        )

        run(
            [venv / "bin" / "python", "-m", "pip", "check"],
            logs / "pip-check.log",
            timeout=120,
            env=env,
            what="pip check (installed packages' requirements)",
        )
        list_time = check_providers_list(venv, env, logs, expected)
        print(f"==> airflow providers list shows airflow-provider-lucca {expected}")
        check_installed(venv / "bin" / "python", env, logs, expected)
        print(
            "==> RealizedTrainingsOperator imports; metadata: provider classifier, project URLs, "
            "Apache-2.0 licence, extras"
        )
        print(
            f"OK in {time.monotonic() - started:.0f} s (Airflow {airflow_time:.0f} s, provider "
            f"{provider_time:.0f} s, providers list {list_time:.0f} s)"
        )
        return 0
    except CheckFailed as failure:
        print(f"\nINSTALL CHECK FAILED: {failure}", file=sys.stderr)
        print(f"(venv and logs kept in {work})", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif work.exists():
            print(f"Kept: {work}")


if __name__ == "__main__":
    sys.exit(main())
