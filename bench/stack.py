"""The servers a benchmark uses: throwaway (or configured) PostgreSQL and Redis, fresh databases."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from stockpile.localstack import Services, resolve_services
from stockpile.migrations import upgrade_head

# Settings every process of a benchmark run gets (API, workers); the key and token are fake.
BENCH_API_KEY = "BENCH-FAKE-KEY"
BENCH_TOKEN = "BENCH-TOKEN"


@dataclass(frozen=True)
class Stack:
    """Where the run's PostgreSQL server and Redis listen."""

    server_url: str
    redis_url: str

    def process_env(self, database_url: str, **extra: str) -> dict[str, str]:
        """Environment for a Stockpile process pointed at `database_url` and this Redis."""
        return {
            "DATABASE_URL": database_url,
            "REDIS_URL": self.redis_url,
            "ALPHAVANTAGE_API_KEY": BENCH_API_KEY,
            "API_TOKEN": BENCH_TOKEN,
            "LOG_LEVEL": "WARNING",
            **extra,
        }


@contextmanager
def running_stack(database_url: str | None, redis_url: str | None) -> Iterator[Stack]:
    """The configured servers when given, throwaway embedded ones otherwise; stopped at the end."""
    services: Services = resolve_services(database_url, redis_url, data_dir=None)
    with services:
        yield Stack(server_url=services.database_url, redis_url=services.redis_url)


@contextmanager
def fresh_database(stack: Stack, purpose: str) -> Iterator[str]:
    """A new database on the run's server, migrated to head, dropped afterwards."""
    name = f"stockpile_bench_{purpose}_{uuid.uuid4().hex[:6]}"
    admin = create_engine(stack.server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(stack.server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_head(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
