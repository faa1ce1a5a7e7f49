"""Dependencies shared by the routes: the database session, the token check, common params."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import redis
from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from api.errors import Unauthorized
from shared.db import CONNECT_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_MS, get_engine
from shared.ratelimit import RedisRateLimiter
from shared.settings import get_settings
from shared.symbols import normalize_symbol
from shared.upstream import make_limiter, make_redis


def get_session() -> Iterator[Session]:
    """A session per request; read routes never commit, write routes commit explicitly."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

T = TypeVar("T")

# Sync routes run in AnyIO's worker threads (40 at most); every thread that reads needs its own
# connection, and a pool smaller than the concurrency opens and closes a connection per request.
READ_POOL_SIZE = 20
READ_POOL_OVERFLOW = 20


class ReadDatabase:
    """Connections for read-only routes: autocommit and without a pre-ping.

    A read is one statement, so it needs no transaction: autocommit saves the BEGIN and ROLLBACK
    round trips, and dropping the pre-ping saves another. A pooled connection that died (the
    server restarted) is noticed by the read itself, which is then run once more on a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def run(self, read: Callable[[Connection], T]) -> T:
        """The result of `read` on a pooled connection (a second try if that one was dead)."""
        try:
            with self.engine.connect() as connection:
                return read(connection)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        with self.engine.connect() as connection:
            return read(connection)


@lru_cache
def _read_database() -> ReadDatabase:
    engine = create_engine(
        get_settings().require_database_url(),
        isolation_level="AUTOCOMMIT",
        pool_size=READ_POOL_SIZE,
        max_overflow=READ_POOL_OVERFLOW,
        pool_timeout=CONNECT_TIMEOUT_SECONDS,
        connect_args={
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        },
    )
    return ReadDatabase(engine)


async def get_read_database() -> ReadDatabase:
    """This process's read connections (async, so FastAPI resolves it without a thread hop)."""
    return _read_database()


ReadDatabaseDep = Annotated[ReadDatabase, Depends(get_read_database)]


@lru_cache
def get_redis() -> redis.Redis[Any]:
    """This process's Redis client (readiness and the budget in /metrics)."""
    return make_redis(get_settings())


@lru_cache
def get_limiter() -> RedisRateLimiter:
    """The fleet's rate limiter, read-only here (status for /metrics)."""
    return make_limiter(get_settings(), get_redis())


_bearer = HTTPBearer(auto_error=False, description="The API_TOKEN configured on the server")


def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse the request unless it carries the configured bearer token."""
    expected = get_settings().api_token
    if expected is None or credentials is None:
        raise Unauthorized()
    # Constant-time comparison, so the token cannot be guessed byte by byte from timings.
    if not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized()


TokenDep = Depends(require_token)


def _parse_iso_date(value: object) -> object:
    if isinstance(value, str):
        try:
            if len(value) != 10:
                raise ValueError
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"'{value}' is not a real date in YYYY-MM-DD form") from None
    return value


IsoDate = Annotated[
    dt.date,
    BeforeValidator(_parse_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "example": "2023-01-05"}),
]


def _symbol(value: str) -> str:
    return normalize_symbol(value)


Symbol = Annotated[
    str,
    AfterValidator(_symbol),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[A-Za-z0-9.\-]{1,15}$", "example": "IBM"},
    ),
]

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page, 1..1000")]
# A bound keeps (page - 1) * limit inside PostgreSQL's bigint OFFSET: a larger page was a 500.
MAX_PAGE = 1_000_000_000
Page = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Page number, from 1 (at most {MAX_PAGE:,})")
]
