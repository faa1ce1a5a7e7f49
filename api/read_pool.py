"""The read routes' asyncpg connections: a small pool of its own, without asyncpg's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from api.errors import DATABASE_UNAVAILABLE, ServiceUnavailable, is_database_unavailable
from shared.core.db import CONNECT_TIMEOUT_SECONDS, STATEMENT_TIMEOUT_MS, asyncpg_dsn

logger = logging.getLogger(__name__)


# Read routes run on the event loop, so this pool, not AnyIO's 40 worker threads, bounds how
# many reads run at once; a reader beyond it waits for a connection (CONNECT_TIMEOUT_SECONDS
# at most, then 503).
READ_POOL_SIZE = 20

# Every read connection's settings. The reads are a handful of statements, each prepared once per
# connection, whose plan does not depend on the values (the same indexes whatever the symbol,
# dates, page or limit). PostgreSQL's default would re-plan the listing at every call: its
# generic plan's estimate assumes an unknown LIMIT/OFFSET reads a tenth of the rows, so it never
# looks as cheap as a custom one, and planning (0.17-0.25 ms a call) cost more than running
# most of them (docs/benchmarks.md, "Deep pages").
READ_SETTINGS = {
    "statement_timeout": str(STATEMENT_TIMEOUT_MS),
    "plan_cache_mode": "force_generic_plan",
}


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
            server_settings=READ_SETTINGS,
        )

    async def close(self) -> None:
        """Close the idle connections; those in use are closed when their read ends."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(
            *(connection.close(timeout=CONNECT_TIMEOUT_SECONDS) for connection in idle),
            return_exceptions=True,
        )
