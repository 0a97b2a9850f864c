"""What ships: the provider's wheel and sdist hold only the provider, with the metadata a user and
an Airflow deployment read (version, classifiers, project URLs, licence, extras); the sandbox is
its own distribution. Installing the wheel into a stock Airflow is scripts/check_install.py
(`make test-install`, run by CI): it needs the network and minutes.
"""

from __future__ import annotations

import re
import subprocess
import tarfile
import zipfile
from email.message import Message
from email.parser import HeaderParser
from pathlib import Path

import pytest

import airflow_provider_lucca
from airflow_provider_lucca.get_provider_info import get_provider_info

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"
VERSION = airflow_provider_lucca.__version__
DIST_INFO = f"airflow_provider_lucca-{VERSION}.dist-info"

# The extras the README documents; a wheel without one of them breaks `pip install '...[x]'`.
EXTRAS = {"s3", "gcs", "azure", "parquet", "delta", "iceberg", "redis", "openlineage"}
PROJECT_URLS = {"Homepage", "Documentation", "Changelog", "Source", "Issues"}


def build(project: Path, out: Path, *kinds: str) -> None:
    result = subprocess.run(
        [str(UV), "build", *kinds, "--out-dir", str(out), str(project)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and sdist exactly as `make dist` builds them."""
    out = tmp_path_factory.mktemp("dist")
    build(ROOT, out)
    return out


@pytest.fixture(scope="module")
def provider_wheel(dist: Path) -> zipfile.ZipFile:
    (wheel,) = dist.glob("*.whl")
    return zipfile.ZipFile(wheel)


@pytest.fixture(scope="module")
def metadata(provider_wheel: zipfile.ZipFile) -> Message:
    return HeaderParser().parsestr(provider_wheel.read(f"{DIST_INFO}/METADATA").decode())


# --- fast: the sources the build reads -------------------------------------------------------


def test_the_version_is_single_sourced() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["hatch"]["version"]["path"] == "airflow_provider_lucca/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+", VERSION)
    # Airflow shows the provider info's version (`airflow providers list`, the UI's providers page).
    assert get_provider_info()["versions"] == [VERSION]


def test_no_option_is_added_in_a_version_newer_than_the_package() -> None:
    def key(version: str) -> tuple[int, ...]:
        return tuple(int(part) for part in version.split("."))

    added = [
        option["version_added"]
        for section in get_provider_info()["config"].values()
        for option in section["options"].values()
    ]
    assert added
    assert all(key(version) <= key(VERSION) for version in added)


def test_the_licence_file_is_the_apache_2_0_text_the_metadata_declares() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:5] == ["Apache", "License", "Version", "2.0,", "January"]
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    # The nine numbered sections of the licence, in order, then its end.
    headings = re.findall(r"^\s+(\d)\. [A-Z][a-z]", text, flags=re.MULTILINE)
    assert headings == [str(n) for n in range(1, 10)]
    assert "END OF TERMS AND CONDITIONS" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "Apache-2.0"
    assert pyproject["project"]["license-files"] == ["LICENSE"]


def test_the_changelog_has_an_entry_for_this_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M)
    # Keep a Changelog: every version heading has its link reference at the bottom.
    for version in re.findall(r"^## \[([^\]]+)\]", changelog, flags=re.MULTILINE):
        assert re.search(rf"^\[{re.escape(version)}\]: https://", changelog, re.M), version


# --- slow: what `uv build` produces (about 10 s) ---------------------------------------------


@pytest.mark.slow
def test_the_provider_wheel_holds_only_the_provider(provider_wheel: zipfile.ZipFile) -> None:
    names = provider_wheel.namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert top == {"airflow_provider_lucca", DIST_INFO}
    assert not [name for name in names if "sandbox" in name]
    assert "airflow_provider_lucca/operators/realized_trainings.py" in names
    assert "airflow_provider_lucca/py.typed" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


@pytest.mark.slow
def test_the_sdist_holds_the_provider_and_what_builds_and_describes_it(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    prefix = f"airflow_provider_lucca-{VERSION}/"
    with tarfile.open(sdist) as archive:
        names = [name.removeprefix(prefix) for name in archive.getnames()]
    top = {name.split("/", 1)[0] for name in names}
    assert top == {
        "airflow_provider_lucca",
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "PKG-INFO",
        ".gitignore",
    }
    assert not [name for name in names if "__pycache__" in name]


@pytest.mark.slow
def test_the_wheel_metadata_tells_users_and_airflow_what_they_need(
    provider_wheel: zipfile.ZipFile, metadata: Message
) -> None:
    assert metadata["Name"] == "airflow-provider-lucca"
    assert metadata["Version"] == VERSION
    classifiers = metadata.get_all("Classifier")
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    assert "Programming Language :: Python :: 3.11" in classifiers
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata.get_all("License-File") == ["LICENSE"]
    shipped = provider_wheel.read(f"{DIST_INFO}/licenses/LICENSE")
    assert shipped == (ROOT / "LICENSE").read_bytes()
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert set(urls) == PROJECT_URLS
    assert all(url.startswith("https://github.com/") for url in urls.values())
    assert set(metadata.get_all("Provides-Extra")) == EXTRAS
    requires = metadata.get_all("Requires-Dist")
    assert any(re.match(r"apache-airflow<4,>=3\.2$", req) for req in requires), requires
    assert metadata["Requires-Python"] == ">=3.10"
    assert metadata["Description-Content-Type"] == "text/markdown"


@pytest.mark.slow
def test_twine_accepts_the_wheel_and_the_sdist(dist: Path) -> None:
    """PyPI refuses what `twine check --strict` refuses (a README that does not render...)."""
    artefacts = [*dist.glob("*.whl"), *dist.glob("*.tar.gz")]
    assert len(artefacts) == 2
    result = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "twine"), "check", "--strict", *map(str, artefacts)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_the_provider_wheel_declares_the_provider_and_no_sandbox_command(
    provider_wheel: zipfile.ZipFile,
) -> None:
    entry_points = provider_wheel.read(f"{DIST_INFO}/entry_points.txt").decode()
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_lucca.get_provider_info:get_provider_info" in (
        entry_points
    )
    assert "lucca-sandbox" not in entry_points
    assert "console_scripts" not in entry_points


@pytest.mark.slow
def test_the_sandbox_is_its_own_distribution_with_its_command(tmp_path: Path) -> None:
    build(ROOT / "sandbox", tmp_path, "--wheel")
    (wheel_path,) = tmp_path.glob("*.whl")
    wheel = zipfile.ZipFile(wheel_path)
    top = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert top == {"lucca_sandbox", "lucca_sandbox-0.1.0.dist-info"}
    entry_points = wheel.read("lucca_sandbox-0.1.0.dist-info/entry_points.txt").decode()
    assert "lucca-sandbox = lucca_sandbox.__main__:main" in entry_points
    assert "lucca_sandbox/server.py" in wheel.namelist()
    # The training catalogue is package data, read at import: without it the sandbox cannot start.
    assert "lucca_sandbox/catalogue.json" in wheel.namelist()
    shipped = wheel.read("lucca_sandbox/catalogue.json")
    assert shipped == (ROOT / "sandbox" / "lucca_sandbox" / "catalogue.json").read_bytes()
