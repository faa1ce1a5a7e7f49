"""The database engine and sessions: one engine per process, created lazily after any fork."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, create_engine

from shared.core.settings import get_settings

# Bounded waits, so a dead database answers 503 quickly instead of hanging requests.
CONNECT_TIMEOUT_SECONDS = 3
STATEMENT_TIMEOUT_MS = 30_000
# A pooled connection unused for this long is pinged before it is handed out again.
PING_AFTER_IDLE_SECONDS = 5.0
_LAST_USED = "stockpile_last_used"

_engine: Engine | None = None


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine with short timeouts that pings only connections that sat idle, for the URL."""
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=10,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    # `pool_pre_ping` sends a SELECT 1 on every checkout: a round trip per transaction, about a
    # tenth of a job. A connection in steady use needs none; one that sat idle may have been
    # cut by a database restart or a proxy and is pinged (and replaced) before use. A connection
    # that dies while busy fails one statement, and SQLAlchemy then recycles the whole pool.
    @event.listens_for(engine, "checkin")
    def _remember_checkin(_dbapi: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        last_used = record.info.get(_LAST_USED)
        if last_used is None or time.monotonic() - last_used < PING_AFTER_IDLE_SECONDS:
            return  # new, or in steady use
        try:
            engine.dialect.do_ping(dbapi)
        except Exception as exc:
            # The pool discards this connection and hands out a new one (or the connect error).
            raise DisconnectionError("pooled connection failed its ping") from exc


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
def autocommit_connection() -> Iterator[Connection]:
    """A pooled connection on which each statement commits by itself.

    For work that is a single statement: it is atomic anyway, and skipping BEGIN and COMMIT
    saves two of its three round trips.
    """
    with get_engine().connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


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


def asyncpg_dsn(database_url: str) -> str:
    """The contract's SQLAlchemy URL (`postgresql+psycopg2://...`) as asyncpg takes it."""
    url = make_url(database_url)
    # libpq lets `?host=` and `?port=` override the URL's own (the embedded server's socket
    # folder travels that way); asyncpg prefers the URL's, so those give way.
    return URL.create(
        "postgresql",
        username=url.username,
        password=url.password,
        host=None if "host" in url.query else url.host,
        port=None if "port" in url.query else url.port,
        database=url.database,
        # asyncpg would send a parameter it does not know to the server as a setting, and
        # PostgreSQL refuses `connect_timeout`; the pool applies its own connect timeout.
        query={key: value for key, value in url.query.items() if key != "connect_timeout"},
    ).render_as_string(hide_password=False)
