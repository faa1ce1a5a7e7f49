"""Connections for bulk exports: one per export, a few at once, never reused."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import asyncpg

from api.errors import DATABASE_UNAVAILABLE, ServiceUnavailable, is_database_unavailable
from shared.core.db import CONNECT_TIMEOUT_SECONDS, asyncpg_dsn

logger = logging.getLogger(__name__)


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
