"""The database engine and sessions: one engine per process, created lazily after any fork."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from shared.settings import get_settings

# Bounded waits, so a dead database answers 503 quickly instead of hanging requests.
CONNECT_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 30_000

_engine: Engine | None = None


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached or stopped answering."""


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine with pre-ping and short timeouts, for the given URL."""
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=pool_size,
        max_overflow=10,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )


def get_engine() -> Engine:
    """This process's engine, created on first use."""
    global _engine
    if _engine is None:
        _engine = make_engine(get_settings().require_database_url())
    return _engine


def dispose_engine() -> None:
    """Forget this process's engine; a forked child must not reuse its parent's connections."""
    global _engine
    if _engine is not None:
        _engine.dispose(close=False)
    _engine = None


def is_connection_error(exc: BaseException) -> bool:
    """Whether a database error means the server is unreachable rather than a bad query."""
    return isinstance(exc, DBAPIError) and (
        exc.connection_invalidated
        or type(exc.orig).__name__ in {"OperationalError", "InterfaceError"}
    )


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session that commits on success and rolls back on error (for tasks and scripts)."""
    with Session(get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
