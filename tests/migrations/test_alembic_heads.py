"""The migrations form one line: `alembic heads` names one head, and the database is at it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import text
from sqlmodel import Session

REPO_ROOT = Path(__file__).resolve().parents[2]


def alembic_heads() -> list[str]:
    """`alembic heads` as an operator runs it from the repository root, one line a head."""
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "heads"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if line.strip()]


def test_alembic_heads_shows_exactly_one_head() -> None:
    heads = alembic_heads()
    assert len(heads) == 1, heads
    assert heads[0].endswith("(head)")


def test_the_database_is_migrated_to_that_head(session: Session) -> None:
    (head,) = alembic_heads()
    version = session.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert head == f"{version} (head)"
