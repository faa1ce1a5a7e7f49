"""`stockpile dev`'s secrets: generated once into the data folder, kept private."""

from __future__ import annotations

import stat
from pathlib import Path

from stockpile.devstack.credentials import load_or_create_secret


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    first = load_or_create_secret(path, lambda: "generated-1")
    second = load_or_create_secret(path, lambda: "generated-2")
    assert (first, second) == ("generated-1", "generated-1")
    assert path.read_text() == "generated-1\n"
    assert mode(path) == 0o600


def test_secret_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    path.write_text("kept\n")
    path.chmod(0o644)
    assert load_or_create_secret(path, lambda: "new") == "kept"
    assert mode(path) == 0o600


def test_empty_secret_file_gets_a_new_secret(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    path.write_text("\n")
    assert load_or_create_secret(path, lambda: "new") == "new"
    assert mode(path) == 0o600
