"""Real servers for the whole suite: PostgreSQL, Redis, the sandbox AlphaVantage and the API.

DATABASE_URL / REDIS_URL from the environment are used when set (and must then be reachable);
otherwise throwaway embedded servers are started for the session and stopped afterwards.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlmodel import Session

from shared.db import dispose_engine, get_engine
from shared.settings import get_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
FIXTURES_DIR = SHARED_DIR / "fixtures" / "alphavantage"

# Distinctive fake secrets: tests search logs, rows and responses for them.
FAKE_API_KEY = "SECRETKEY-TEST-7f3a9c"
API_TOKEN = "TOKEN-TEST-51c2e8"


@dataclass(frozen=True)
class Servers:
    """Where the suite's PostgreSQL and Redis listen."""

    database_url: str
    redis_url: str


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    if os.environ.get("TMP_HACK"):
        yield Servers(os.environ["DATABASE_URL"], os.environ["REDIS_URL"])
        return
    from stockpile.localstack import resolve_services

    data_dir = tmp_path_factory.mktemp("servers")
    with resolve_services(
        database_url=os.environ.get("DATABASE_URL"),
        redis_url=os.environ.get("REDIS_URL"),
        data_dir=data_dir,
        persistent=False,
    ) as services:
        yield Servers(database_url=services.database_url, redis_url=services.redis_url)


def _with_database(url: str, name: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url(servers: Servers) -> Iterator[str]:
    """A fresh database on the suite's server, migrated to head, dropped at the end."""
    from sqlalchemy import create_engine

    name = f"stockpile_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(servers.database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _with_database(servers.database_url, name)
    config = Config(str(REPO_ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")
    yield url
    dispose_engine()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url(servers: Servers) -> str:
    """The suite's Redis (database 0 is the broker, tests use their own key prefixes)."""
    return servers.redis_url


@pytest.fixture(scope="session", autouse=True)
def environment(database_url: str, redis_url: str) -> Iterator[None]:
    """Point the settings (and every subprocess the tests start) at the suite's servers."""
    values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ALPHAVANTAGE_API_KEY": FAKE_API_KEY,
        "API_TOKEN": API_TOKEN,
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
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
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
