"""Real servers for the whole suite: PostgreSQL, Redis, the sandbox AlphaVantage and the API.

DATABASE_URL / REDIS_URL from the environment are used when set (and must then be reachable);
otherwise throwaway embedded servers are started for the session and stopped afterwards.

The suite runs in several processes (pytest-xdist). Each process is a session of its own: its
own embedded servers (or, on configured ones, its own database and its own Redis database
number), its own sandbox and API, so no test sees another process's jobs, queues or budget.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import redis
import uvicorn
from sqlalchemy import text
from sqlmodel import Session

from shared.core.db import dispose_engine, get_engine
from shared.core.settings import get_settings
from stockpile.localstack import free_port
from stockpile.migrations import upgrade_head
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import SandboxHandle, running_sandbox
from tests.support import API_TOKEN, FAKE_API_KEY


@dataclass(frozen=True)
class Servers:
    """Where the suite's PostgreSQL and Redis listen."""

    database_url: str
    redis_url: str


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    from stockpile.localstack import LocalStackError, resolve_services

    configured_redis = os.environ.get("REDIS_URL")
    try:
        services = resolve_services(
            database_url=os.environ.get("DATABASE_URL"),
            redis_url=_own_redis_database(configured_redis) if configured_redis else None,
            data_dir=None,
            persistent=False,
        )
    except LocalStackError as exc:
        pytest.exit(f"cannot provide the test servers: {exc}", returncode=3)
    with services:
        yield Servers(database_url=services.database_url, redis_url=services.redis_url)


def _own_redis_database(url: str) -> str:
    """`url` with this test process's own database number under pytest-xdist (gw0 -> 1, ...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        return url
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path=f"/{1 + int(worker.removeprefix('gw')) % 15}"))


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A fresh database on the suite's server, migrated to head, dropped at the end."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    name = f"stockpile_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(servers.database_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _with_database(servers.database_url, name)
    upgrade_head(url)
    yield url
    dispose_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url(servers: Servers) -> str:
    """The suite's Redis (database 0 is the broker, tests use their own key prefixes)."""
    return servers.redis_url


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxHandle]:
    """The sandbox AlphaVantage in its own process, for the whole session."""
    with running_sandbox(SandboxConfig(limits=None)) as handle:
        yield handle


# Settings every test process gets: short dispatch ticks so recovery takes seconds. The lease
# (the hard bound on one attempt; Celery's hard time limit is 0.75 of it) leaves a slow call on a
# loaded machine room to finish; a dead worker is found by its missed heartbeats, not the lease.
TEST_SETTINGS = {
    "ALPHAVANTAGE_API_KEY": FAKE_API_KEY,
    "API_TOKEN": API_TOKEN,
    "ALPHAVANTAGE_RATE_LIMITS": "50/second",
    "JOB_LEASE_SECONDS": "60",
    "JOB_MAX_ATTEMPTS": "3",
    "DISPATCH_INTERVAL_SECONDS": "1",
    "JOB_RESEND_AFTER_SECONDS": "5",
    "LOG_LEVEL": "INFO",
}


@pytest.fixture(scope="session", autouse=True)
def environment(database_url: str, redis_url: str, sandbox_server: SandboxHandle) -> Iterator[None]:
    """Point the settings (and every subprocess the tests start) at the suite's servers."""
    values = {
        **TEST_SETTINGS,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ALPHAVANTAGE_BASE_URL": sandbox_server.base_url,
    }
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    get_settings.cache_clear()
    dispose_engine()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()


TABLES_TO_EMPTY = ("financial_data", "jobs", "api_calls", "tracked_symbols")


@pytest.fixture
def session() -> Iterator[Session]:
    """A session on an emptied database (tracked symbols back to the IBM/AAPL defaults)."""
    engine = get_engine()
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES_TO_EMPTY)}"))
        conn.execute(text("INSERT INTO tracked_symbols (symbol) VALUES ('IBM'), ('AAPL')"))
    with Session(engine, expire_on_commit=False) as db_session:
        yield db_session


class _ThreadedServer(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test process keeps its own handlers
        pass


@pytest.fixture(scope="session")
def api_url(environment: None) -> Iterator[str]:
    """The real API served over HTTP on a loopback port for the whole session."""
    from api.main import app

    port = free_port()
    server = _ThreadedServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            # Clients keep connections across slow steps of a test; uvicorn's 5 s default would
            # close one just as it is reused (a reset, not a failure of the API).
            timeout_keep_alive=120,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def api(api_url: str) -> Iterator[httpx.Client]:
    """An HTTP client for the API."""
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


@pytest.fixture
def auth() -> dict[str, str]:
    """The Authorization header with the suite's token."""
    return {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:  # type: ignore[type-arg]
    """A client on the suite's Redis."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def sandbox(
    sandbox_server: SandboxHandle,
    redis_client: redis.Redis,  # type: ignore[type-arg]
) -> SandboxHandle:
    """The sandbox with calls, faults and limits reset, and the fleet's limiter state cleared."""
    sandbox_server.reset()
    sandbox_server.configure(**SandboxConfig(limits=None).model_dump())
    for key in redis_client.scan_iter("stockpile:*"):
        redis_client.delete(key)
    return sandbox_server
