"""The parts of `make test-install` (scripts/check_install.py) that need no network: the constraints
it derives from uv.lock and its time limit. The install itself runs in CI (.ci/run): it downloads
Airflow and takes minutes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scripts import check_install


def pins(path: Path) -> dict[str, str]:
    pairs = (line.split(";")[0].strip().split("==") for line in path.read_text().splitlines())
    return {pair[0].lower(): pair[1] for pair in pairs if len(pair) == 2}


def test_the_constraints_pin_the_locked_airflow_and_extras_but_not_the_project(
    tmp_path: Path,
) -> None:
    constraints = tmp_path / "constraints.txt"
    count = check_install.lock_constraints(constraints, tmp_path)
    pinned = pins(constraints)
    assert count >= len(pinned) > 100  # some packages pinned per Python version (markers)
    assert pinned["apache-airflow"] == check_install.AIRFLOW
    # Each extra the check installs has its packages pinned, so pip has nothing to choose.
    for package in ("apache-airflow-providers-amazon", "s3fs", "aiobotocore", "botocore"):
        assert package in pinned, package
    for package in ("pyarrow", "deltalake", "pyiceberg", "redis"):
        assert package in pinned, package
    # Not the project (the wheel under test) nor the workspace sandbox; no development tools.
    assert "airflow-provider-lucca" not in pinned
    assert "lucca-sandbox" not in pinned
    for dev_only in ("pytest", "moto", "ruff", "dlt"):
        assert dev_only not in pinned, dev_only
    assert not [line for line in constraints.read_text().splitlines() if line.startswith("-e")]


@pytest.mark.slow
def test_a_step_over_its_time_limit_is_stopped_and_fails_with_its_log(tmp_path: Path) -> None:
    """A backtracking pip must fail CI with a reason, not hang it."""
    log = tmp_path / "step.log"
    child = "import time; print('resolving...', flush=True); time.sleep(60)"
    with pytest.raises(check_install.CheckFailed) as failure:
        check_install.run([sys.executable, "-c", child], log, timeout=1.0, what="pip install x")
    message = str(failure.value)
    assert message.startswith("pip install x: still running after 1 s")
    assert "resolving..." in message  # the tail of the step's log


def test_a_failing_step_fails_with_its_exit_code_and_log(tmp_path: Path) -> None:
    log = tmp_path / "step.log"
    child = "import sys; print('ERROR: ResolutionImpossible'); sys.exit(3)"
    with pytest.raises(check_install.CheckFailed) as failure:
        check_install.run([sys.executable, "-c", child], log, timeout=30, what="pip install y")
    assert str(failure.value).startswith("pip install y: exit 3")
    assert "ResolutionImpossible" in str(failure.value)
