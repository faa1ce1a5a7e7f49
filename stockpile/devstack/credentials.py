"""The API token and Flower login: configured, or generated once into the data folder."""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from shared.core.settings import Settings

FLOWER_USER = "stockpile"


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret the stack uses, and the file it was generated into (None when configured)."""

    value: str
    kept_in: Path | None


def load_or_create_secret(path: Path, generate: Callable[[], str]) -> str:
    """Return the secret kept in `path`; on first use generate it and store it with mode 0600."""
    with suppress(FileNotFoundError):
        value = path.read_text(encoding="utf-8").strip()
        if value:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                path.chmod(0o600)
            return value
    value = generate()
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f"{value}\n")
    os.replace(temporary, path)
    return value


def api_token_credential(settings: Settings, data_dir: Path) -> Credential:
    if settings.api_token is not None:
        return Credential(settings.api_token.get_secret_value(), None)
    path = data_dir / "api_token"
    return Credential(load_or_create_secret(path, secrets.token_urlsafe), path)


def flower_login_credential(settings: Settings, data_dir: Path) -> Credential:
    if settings.flower_basic_auth is not None:
        return Credential(settings.flower_basic_auth.get_secret_value(), None)
    path = data_dir / "flower_basic_auth"
    return Credential(
        load_or_create_secret(path, lambda: f"{FLOWER_USER}:{secrets.token_urlsafe(18)}"), path
    )
