"""`make test-floor`: the lowest Airflow the package accepts (``apache-airflow>=3.2``), tested.

1. ``.venv-floor`` (uv venv, this machine's python3) holds Airflow 3.2.2, the latest 3.2 patch,
   with the versions of its dependencies as of its release day: ``uv pip compile
   --exclude-newer`` of ``apache-airflow==3.2.2`` gives the constraints (what Airflow's own
   constraints-3.2.2 file pins, which cannot be downloaded here), then the project (editable, with
   its extras) and the ``dev`` group are installed under them;
2. the unit and contract tests run there (``-m "not slow and not e2e and not browser"``);
3. the daily example DAG runs once with ``dag.test()`` against the sandbox, on that Airflow.

Why the release-day versions: Airflow 3.2.2 with today's FastAPI (0.137 and later, which Airflow
3.3 excludes itself) fails every task with a pydantic error inside its execution API
(``TITerminalStatePayload needs a discriminator field``); installed with its constraints it works.

The environment is reused while this script, pyproject.toml and uv.lock are unchanged (a stamp in
the venv). Exits non-zero with a one-line reason on any failure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"
VENV = ROOT / ".venv-floor"
PYTHON = VENV / "bin" / "python"
AIRFLOW = "3.2.2"
# Airflow 3.2.2 was uploaded to PyPI on 2026-05-29: its dependency tree as of the next day.
RELEASED = "2026-05-30"
EXTRAS = "s3,parquet,delta,iceberg,redis,openlineage"
PYTEST = [
    *("-p", "no:cacheprovider", "-q"),
    *("-m", "not slow and not e2e and not browser"),
    *("-n", "2", "--dist", "loadfile"),
    # All e2e: not collected, so they need nothing of the floor environment.
    *("--ignore=tests/e2e", "--ignore=tests/distributed"),
]
DAG_DAY = "2025-12-10"


class FloorFailed(Exception):
    """A step of the floor check failed: the message says which."""


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def run(
    command: list[str | Path],
    *,
    what: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> float:
    started = time.monotonic()
    result = subprocess.run([str(part) for part in command], cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        raise FloorFailed(f"{what}: exit {result.returncode}")
    return time.monotonic() - started


def stamp() -> str:
    digest = hashlib.sha256()
    for path in (Path(__file__), ROOT / "pyproject.toml", ROOT / "uv.lock"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_env() -> float:
    """The floor venv, rebuilt when its inputs changed; seconds spent."""
    stamp_file = VENV / ".floor-stamp"
    if stamp_file.exists() and stamp_file.read_text() == stamp() and PYTHON.exists():
        step(f"{VENV.name}: up to date (Airflow {AIRFLOW})")
        return 0.0
    started = time.monotonic()
    step(f"{VENV.name}: Airflow {AIRFLOW} with its dependencies as of {RELEASED}")
    run([UV, "venv", "--quiet", "--clear", "--python", "python3", VENV], what="uv venv")
    constraints = VENV / f"airflow-{AIRFLOW}-constraints.txt"
    with tempfile.TemporaryDirectory() as tmp:
        wanted = Path(tmp) / "airflow.in"
        wanted.write_text(f"apache-airflow=={AIRFLOW}\n")
        run(
            [
                *(UV, "pip", "compile", "--quiet", "--python", PYTHON),
                *("--exclude-newer", RELEASED, wanted, "--output-file", constraints),
            ],
            what=f"uv pip compile apache-airflow=={AIRFLOW} --exclude-newer {RELEASED}",
        )
    run(
        [
            *(UV, "pip", "install", "--quiet", "--python", PYTHON, "--constraint", constraints),
            *("--editable", f".[{EXTRAS}]", "--group", "dev", f"apache-airflow=={AIRFLOW}"),
        ],
        what="uv pip install the project and the dev group on the floor",
        cwd=ROOT,
    )
    stamp_file.write_text(stamp())
    return time.monotonic() - started


def installed_airflow() -> str:
    output = subprocess.run(
        [PYTHON, "-c", "from importlib.metadata import version; print(version('apache-airflow'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return output.stdout.strip()


def run_daily_dag() -> None:
    """Run inside the floor venv: one daily DAG run with dag.test() against a sandbox."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from local_airflow import airflow_env, prepare_metadata_db, sandbox_connection

    from lucca_sandbox.process import SandboxProcess

    with tempfile.TemporaryDirectory(prefix="lucca-floor-dag-") as tmp:
        home, lake = Path(tmp) / "airflow_home", Path(tmp) / "lake"
        sandbox = SandboxProcess(
            [*("--records", "2000", "--start", "2025-11-01", "--end", "2025-12-31")],
            log_path=str(Path(tmp) / "sandbox.log"),
        ).start()
        try:
            env = airflow_env(home, lake.as_uri(), sandbox_connection(sandbox.url, 600))
            prepare_metadata_db(env)
            subprocess.run(
                [sys.executable, str(ROOT / "scripts" / "run_dag_tests.py"), "daily", DAG_DAY],
                env=env,
                check=True,
            )
            stats = sandbox.stats()
        finally:
            sandbox.stop()
        manifests = sorted(lake.rglob("_manifest.json"))
        if not manifests:
            raise FloorFailed(f"the daily DAG committed no partition under {lake}")
        records = sum(json.loads(path.read_text()).get("record_count", 0) for path in manifests)
        print(
            f"    {len(manifests)} partitions committed ({records} records), "
            f"{stats['requests']} requests to the sandbox"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-dag", action="store_true", help="skip the dag.test() run")
    parser.add_argument("--dag-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments")
    args = parser.parse_args(argv)
    if args.dag_only:  # the child, in the floor venv
        try:
            run_daily_dag()
        except (FloorFailed, subprocess.CalledProcessError) as failure:
            print(f"FLOOR DAG RUN FAILED: {failure}", file=sys.stderr)
            return 1
        return 0

    started = time.monotonic()
    try:
        setup = ensure_env()
        found = installed_airflow()
        if found != AIRFLOW:
            raise FloorFailed(f"{VENV.name} holds apache-airflow {found!r}, not {AIRFLOW}")
        step(f"Unit and contract tests on Airflow {found}")
        env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
        tests = run(
            [PYTHON, "-m", "pytest", *PYTEST, *args.pytest_args],
            what=f"the unit and contract tests on Airflow {AIRFLOW}",
            cwd=ROOT,
            env=env,
        )
        dag = 0.0
        if not args.no_dag:
            step(f"The daily example DAG, one run with dag.test() on Airflow {found}")
            dag = run(
                [PYTHON, Path(__file__), "--dag-only"],
                what=f"the daily DAG's dag.test() on Airflow {AIRFLOW}",
                cwd=ROOT,
                env=env,
            )
    except FloorFailed as failure:
        print(f"\nFLOOR CHECK FAILED (Airflow {AIRFLOW}): {failure}", file=sys.stderr)
        return 1
    print(
        f"OK: Airflow {AIRFLOW} in {time.monotonic() - started:.0f} s (environment {setup:.0f} s, "
        f"tests {tests:.0f} s, DAG run {dag:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
