"""Dependencies shared by the routes: database access, the token check, common params."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, Any

import asyncpg
import redis
from fastapi import Depends, FastAPI, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema
from sqlmodel import Session

from api.errors import (
    DATABASE_UNAVAILABLE,
    ServiceUnavailable,
    Unauthorized,
    is_database_unavailable,
)
from shared.dates import parse_iso_date
from shared.db import CONNECT_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_MS, asyncpg_dsn, get_engine
from shared.ratelimit import RedisRateLimiter
from shared.settings import get_settings
from shared.symbols import normalize_symbol
from shared.upstream import make_limiter, make_redis

logger = logging.getLogger(__name__)


def database_session() -> Session:
    """A session for one request: `with database_session() as session:` inside a sync route.

    Not a dependency: FastAPI enters and leaves a sync generator dependency in worker threads
    of its own, two thread hand-overs per request on top of the route's. Read-only use never
    commits; write routes commit explicitly.
    """
    return Session(get_engine(), expire_on_commit=False)


# Read routes run on the event loop, so this pool, not AnyIO's 40 worker threads, bounds how
# many reads run at once; a reader beyond it waits for a connection (CONNECT_TIMEOUT_SECONDS
# at most, then 503).
READ_POOL_SIZE = 20


def _connection_lost(exc: BaseException) -> bool:
    """Whether a statement failed because its pooled connection is gone (server restarted)."""
    return (
        isinstance(
            exc,
            asyncpg.PostgresConnectionError
            | asyncpg.AdminShutdownError
            | asyncpg.CrashShutdownError
            | OSError,
        )
        or type(exc) is asyncpg.InterfaceError
    )


class ReadPool:
    """asyncpg connections for the read routes, opened in the event loop that serves them.

    A read is one statement: it runs without a transaction and leaves no session state, so a
    connection is reused as it is. asyncpg's own pool resets every connection it takes back (a
    round trip) and hands it back through a task and two timers, about a tenth of a read's
    CPU; this is the subset the reads need. A pooled connection that died (the server
    restarted) is noticed by the read itself, which then runs once more on a new connection:
    reads are idempotent.
    """

    def __init__(self, database_url: Callable[[], str]) -> None:
        self._database_url = database_url
        self._dsn: str | None = None
        self._idle: list[asyncpg.Connection] = []
        # At most READ_POOL_SIZE connections at once; more readers wait for one.
        self._slots = asyncio.Semaphore(READ_POOL_SIZE)
        self._closed = False

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """The rows of one statement; ServiceUnavailable (503) when PostgreSQL cannot answer."""
        try:
            if self._slots.locked():
                # Every connection is busy: wait as long as a connect may take, no longer.
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
            try:
                return await self._fetch(query, args)
            finally:
                self._slots.release()
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("database unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(DATABASE_UNAVAILABLE) from exc

    async def _fetch(self, query: str, args: tuple[object, ...]) -> list[asyncpg.Record]:
        connection = await self._connection()
        try:
            return await self._run(connection, query, args)
        except Exception as exc:
            if not _connection_lost(exc):
                raise
        # One dead connection means a restart: the idle ones predate it too.
        idle, self._idle = self._idle, []
        for stale in idle:
            stale.terminate()
        return await self._run(await self._connection(), query, args)

    async def _run(
        self, connection: asyncpg.Connection, query: str, args: tuple[object, ...]
    ) -> list[asyncpg.Record]:
        """The statement's rows; the connection goes back to the pool unless it broke."""
        try:
            rows = await connection.fetch(query, *args)
        except asyncpg.PostgresError as exc:
            # The server refused the statement and is ready for the next one (a statement
            # timeout, say), unless it is going away.
            self._release(connection, reusable=not _connection_lost(exc))
            raise
        except BaseException:
            # Broken, or cancelled halfway through the protocol: never reuse it.
            self._release(connection, reusable=False)
            raise
        self._release(connection, reusable=True)
        return rows

    def _release(self, connection: asyncpg.Connection, *, reusable: bool) -> None:
        if reusable and not self._closed and not connection.is_closed():
            self._idle.append(connection)
        else:
            connection.terminate()

    async def _connection(self) -> asyncpg.Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.is_closed():
                return connection
        if self._dsn is None:
            self._dsn = asyncpg_dsn(self._database_url())
        return await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"statement_timeout": str(STATEMENT_TIMEOUT_MS)},
        )

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when their read ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(
            *(connection.close(timeout=CONNECT_TIMEOUT_SECONDS) for connection in idle),
            return_exceptions=True,
        )


# Bulk exports run at most this many at once, each on a connection of its own: one stream
# can last minutes, so it neither holds a read connection nor keeps their statement timeout.
EXPORTS_AT_ONCE = 4
# An export goes as fast as its client reads; this only bounds one that stopped reading.
EXPORT_STATEMENT_TIMEOUT_MS = 3_600_000
# How often the server looks for a vanished client while a statement runs (PostgreSQL 14+):
# an export whose HTTP client went away is also ended from the server side.
CLIENT_CHECK_INTERVAL_MS = 1_000


class ExportConnections:
    """Connections for bulk exports: opened per export, ended with it, never reused.

    Leaving `connection()` normally closes the connection; leaving it by an error or a
    cancellation (the client disconnected mid-stream) terminates it at once, which stops the
    server's COPY and frees its backend.
    """

    def __init__(self, database_url: Callable[[], str]) -> None:
        self._database_url = database_url
        self._slots = asyncio.Semaphore(EXPORTS_AT_ONCE)
        self._open: set[asyncpg.Connection] = set()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection for one export; ServiceUnavailable (503) when none can be had."""
        try:
            # Every slot busy: wait as long as a connect may take, no longer.
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise ServiceUnavailable("Too many exports are running; try again shortly.") from exc
        try:
            connection = await self._connect()
            self._open.add(connection)
            try:
                yield connection
            except BaseException:
                connection.terminate()
                raise
            finally:
                self._open.discard(connection)
            await connection.close(timeout=CONNECT_TIMEOUT_SECONDS)
        finally:
            self._slots.release()

    async def _connect(self) -> asyncpg.Connection:
        try:
            return await asyncpg.connect(
                asyncpg_dsn(self._database_url()),
                timeout=CONNECT_TIMEOUT_SECONDS,
                server_settings={
                    "statement_timeout": str(EXPORT_STATEMENT_TIMEOUT_MS),
                    "client_connection_check_interval": str(CLIENT_CHECK_INTERVAL_MS),
                },
            )
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            logger.warning("database unavailable: %s", type(exc).__name__)
            raise ServiceUnavailable(DATABASE_UNAVAILABLE) from exc

    def close(self) -> None:
        """End the exports still streaming (the server is stopping)."""
        for connection in self._open:
            connection.terminate()


def _database_url() -> str:
    return get_settings().require_database_url()


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[dict[str, ReadPool | ExportConnections]]:
    """A read pool and export connections per server: bound to the event loop that serves
    them, closed when it stops."""
    reads = ReadPool(_database_url)
    exports = ExportConnections(_database_url)
    try:
        yield {"read_pool": reads, "exports": exports}
    finally:
        exports.close()
        await reads.close()


def read_pool(request: Request) -> ReadPool:
    """The read pool of the server handling this request (made by `lifespan`)."""
    # Read by the routes themselves rather than injected: a dependency costs FastAPI a second
    # round of parameter solving per request, about 7 % of a read's CPU.
    reads: ReadPool = request.state.read_pool
    return reads


def export_connections(request: Request) -> ExportConnections:
    """The export connections of the server handling this request (made by `lifespan`)."""
    exports: ExportConnections = request.state.exports
    return exports


@lru_cache
def get_redis() -> redis.Redis[Any]:
    """This process's Redis client (readiness and the budget in /metrics)."""
    return make_redis(get_settings())


@lru_cache
def get_limiter() -> RedisRateLimiter:
    """The fleet's rate limiter, read-only here (status for /metrics)."""
    return make_limiter(get_settings(), get_redis())


_bearer = HTTPBearer(auto_error=False, description="The API_TOKEN configured on the server")


async def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse the request unless it carries the configured bearer token (async: no I/O, so it
    runs on the event loop instead of a worker thread)."""
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
    return parse_iso_date(value) if isinstance(value, str) else value


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
