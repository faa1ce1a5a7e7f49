"""Apply Alembic migrations from code (the CLI, the local stack and the tests use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

# A source checkout keeps alembic.ini beside the packages; an image has it in the working directory.
_CANDIDATES = (Path(__file__).resolve().parents[1] / "alembic.ini", Path("alembic.ini"))


def alembic_config(database_url: str) -> Config:
    """Alembic's configuration for the database at `database_url`."""
    ini = next((path for path in _CANDIDATES if path.is_file()), None)
    if ini is None:
        raise FileNotFoundError("alembic.ini not found beside the package or in this directory")
    config = Config(str(ini.resolve()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def upgrade_head(database_url: str) -> None:
    """Bring the database at `database_url` to the newest schema."""
    command.upgrade(alembic_config(database_url), "head")
