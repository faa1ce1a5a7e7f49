"""The wheel the images install carries every file of the packages, the dashboard's included.

Under compose the API serves `/`, `/static/...`, `/docs` and `/redoc` from the installed wheel, not
from a checkout: a file the package data leaves out is a blank page there and nowhere else. The
wheel is built as Dockerfile.api and Dockerfile.worker build it (the same files copied, the same
pip command, no Docker needed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.processes import REPO_ROOT

PACKAGES = ("api", "shared", "worker", "stockpile")
BYTECODE = ("__pycache__", "*.pyc")


def test_the_wheel_carries_every_file_of_the_packages(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns(*BYTECODE)
        )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(wheels), str(source)),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("stockpile-*.whl")
    packed = set(zipfile.ZipFile(wheel).namelist())
    files = {
        path.relative_to(source).as_posix()
        for package in PACKAGES
        for path in (source / package).rglob("*")
        if path.is_file()
    }
    assert any(name.startswith("api/static/vendor/") for name in files)
    assert sorted(files - packed) == []
