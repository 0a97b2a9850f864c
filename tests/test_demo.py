"""`make demo` end to end: the script the README starts with works, twice in a row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_ARGS = ["--history-until", "2025-03-01", "--daily-days", "2"]


def run_demo(demo_dir: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "LUCCA_"))}
    env["LUCCA_DEMO_DIR"] = str(demo_dir)
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), *DEMO_ARGS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


@pytest.mark.slow
def test_demo_runs_twice_and_reports_what_it_wrote(tmp_path: Path) -> None:
    first = run_demo(tmp_path)
    lake = tmp_path / "lake" / "lucca" / "realized_trainings"
    manifests = sorted(lake.glob("session_end_on=*/_manifest.json"))
    # History [2025-01-01, 2025-03-01) is 59 days; the daily runs add 03-01 and 03-02.
    assert len(manifests) == 61
    assert "Partitions under" in first
    assert "2025-01" in first
    assert "Reports (training hours per employee and month)" in first
    assert "Requests to the sandbox:" in first
    files_before = sorted(p.relative_to(lake) for p in lake.rglob("*") if p.is_file())

    second = run_demo(tmp_path)

    files_after = sorted(p.relative_to(lake) for p in lake.rglob("*") if p.is_file())
    assert len(files_after) == len(files_before)  # replaced, not accumulated
    total = [line for line in second.splitlines() if line.strip().startswith("total")]
    assert total == [line for line in first.splitlines() if line.strip().startswith("total")]
