"""Dependencies shared by the routes: the database session, the token check, common params."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from functools import lru_cache
from typing import Annotated, Any

import redis
from fastapi import Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from sqlmodel import Session

from api.errors import Unauthorized
from shared.db import get_engine
from shared.ratelimit import RedisRateLimiter
from shared.settings import get_settings
from shared.symbols import normalize_symbol
from shared.upstream import make_limiter, make_redis


def get_session() -> Iterator[Session]:
    """A session per request; read routes never commit, write routes commit explicitly."""
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


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
Page = Annotated[int, Query(ge=1, description="Page number, from 1")]
