"""What ships: the provider's wheel holds only the provider; the sandbox is its own distribution."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"


def build_wheel(project: Path, out: Path) -> zipfile.ZipFile:
    result = subprocess.run(
        [str(UV), "build", "--wheel", "--out-dir", str(out), str(project)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.fixture(scope="module")
def provider_wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    return build_wheel(ROOT, tmp_path_factory.mktemp("provider"))


def test_the_provider_wheel_holds_only_the_provider(provider_wheel: zipfile.ZipFile) -> None:
    names = provider_wheel.namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"airflow_provider_lucca", "airflow_provider_lucca-0.1.0.dist-info"}
    assert not [name for name in names if "sandbox" in name]
    assert "airflow_provider_lucca/operators/realized_trainings.py" in names


def test_the_provider_wheel_declares_the_provider_and_no_sandbox_command(
    provider_wheel: zipfile.ZipFile,
) -> None:
    entry_points = provider_wheel.read(
        "airflow_provider_lucca-0.1.0.dist-info/entry_points.txt"
    ).decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "lucca-sandbox" not in entry_points
    assert "console_scripts" not in entry_points


def test_the_sandbox_is_its_own_distribution_with_its_command(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT / "sandbox", tmp_path)
    top = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert top == {"lucca_sandbox", "lucca_sandbox-0.1.0.dist-info"}
    entry_points = wheel.read("lucca_sandbox-0.1.0.dist-info/entry_points.txt").decode()
    assert "lucca-sandbox = lucca_sandbox.__main__:main" in entry_points
    assert "lucca_sandbox/server.py" in wheel.namelist()
    # The training catalogue is package data, read at import: without it the sandbox cannot start.
    assert "lucca_sandbox/catalogue.json" in wheel.namelist()
    shipped = wheel.read("lucca_sandbox/catalogue.json")
    assert shipped == (ROOT / "sandbox" / "lucca_sandbox" / "catalogue.json").read_bytes()
