"""The read routes' asyncpg pool against the suite's PostgreSQL (outages: test_readiness_outage)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import pytest

from api.errors import ServiceUnavailable
from api.read_pool import READ_POOL_SIZE, ReadPool
from shared.core.db import STATEMENT_TIMEOUT_MS, asyncpg_dsn

T = TypeVar("T")


def with_pool(database_url: str, use: Callable[[ReadPool], Awaitable[T]]) -> T:
    """`use` on a fresh pool in its own event loop, closed afterwards."""

    async def run() -> T:
        reads = ReadPool(lambda: database_url)
        try:
            return await use(reads)
        finally:
            await reads.close()

    return asyncio.run(run())


def test_asyncpg_dsn_lets_the_query_name_host_and_port() -> None:
    dsn = asyncpg_dsn(
        "postgresql+psycopg2://us%40er:p%3Ass@localhost:6000/db?host=/run/pg%20x&port=5433"
    )
    assert dsn == "postgresql://us%40er:p%3Ass@/db?host=%2Frun%2Fpg+x&port=5433"
    assert asyncpg_dsn("postgresql+psycopg2://u:p@db.example:6543/prices?sslmode=require") == (
        "postgresql://u:p@db.example:6543/prices?sslmode=require"
    )


def test_asyncpg_dsn_drops_libpq_connect_timeout(database_url: str) -> None:
    url = f"{database_url}{'&' if '?' in database_url else '?'}connect_timeout=7"
    assert "connect_timeout" not in asyncpg_dsn(url)

    async def use(reads: ReadPool) -> int:
        return int((await reads.fetch("SELECT 1"))[0][0])

    assert with_pool(url, use) == 1  # PostgreSQL would refuse it as a server setting


def test_reads_carry_the_statement_timeout(database_url: str) -> None:
    async def use(reads: ReadPool) -> str:
        return str((await reads.fetch("SHOW statement_timeout"))[0][0])

    assert with_pool(database_url, use) == f"{STATEMENT_TIMEOUT_MS // 1000}s"


def test_sequential_reads_reuse_one_connection(database_url: str) -> None:
    async def use(reads: ReadPool) -> set[int]:
        return {(await reads.fetch("SELECT pg_backend_pid()"))[0][0] for _ in range(10)}

    assert len(with_pool(database_url, use)) == 1


def test_concurrent_reads_open_at_most_the_pool_size(database_url: str) -> None:
    async def use(reads: ReadPool) -> list[int]:
        reads_at_once = [
            reads.fetch("SELECT pg_backend_pid() FROM pg_sleep(0.2)")
            for _ in range(READ_POOL_SIZE + 10)
        ]
        return [rows[0][0] for rows in await asyncio.gather(*reads_at_once)]

    backends = with_pool(database_url, use)
    assert len(backends) == READ_POOL_SIZE + 10
    assert len(set(backends)) == READ_POOL_SIZE


def test_a_refused_statement_is_its_own_error_and_keeps_the_connection(
    database_url: str,
) -> None:
    async def use(reads: ReadPool) -> tuple[int, int]:
        before = (await reads.fetch("SELECT pg_backend_pid()"))[0][0]
        with pytest.raises(asyncpg.DivisionByZeroError):
            await reads.fetch("SELECT 1 / $1::int", 0)
        after = (await reads.fetch("SELECT pg_backend_pid()"))[0][0]
        return before, after

    before, after = with_pool(database_url, use)
    assert before == after


def test_an_unreachable_server_is_service_unavailable(tmp_path: object) -> None:
    nowhere = f"postgresql+psycopg2://postgres@localhost/none?host={tmp_path}&port=5432"

    async def use(reads: ReadPool) -> None:
        await reads.fetch("SELECT 1")

    with pytest.raises(ServiceUnavailable) as raised:
        with_pool(nowhere, use)
    assert raised.value.status_code == 503
    assert isinstance(raised.value.__cause__, OSError)
