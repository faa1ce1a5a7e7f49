"""Readiness and data endpoints while PostgreSQL or Redis is down, and after they come back.

The API runs as its own uvicorn process pointed at a PostgreSQL and a Redis that these tests
stop and start (the suite's shared servers must stay up for everyone else). The read routes
use their own asyncpg pool, so their outages and restarts are tested here too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from api.errors import DATABASE_UNAVAILABLE
from api.routes.budget import REDIS_UNAVAILABLE
from stockpile.localstack import (
    EmbeddedPostgres,
    EmbeddedRedis,
    free_port,
    start_postgres,
    start_redis,
)
from stockpile.migrations import upgrade_head
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# The bound the contract's "503 when a dependency is down" must meet: no request hangs.
OUTAGE_ANSWER_SECONDS = 10.0
RECOVERY_TIMEOUT = 30.0
STATISTICS = "/api/statistics?symbol=IBM&start_date=2023-01-01&end_date=2023-12-31"
# More concurrent reads than the benchmark's 16 clients: every pooled read connection is used.
READERS = 24


@dataclass
class Stack:
    """An API process and the servers it depends on, which the tests may stop."""

    api: httpx.Client
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis
    database_url: str


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Throwaway PostgreSQL (migrated) and Redis, and the API on them in its own process."""
    with start_postgres() as postgres, start_redis() as redis_server:
        database_url = postgres.create_database("stockpile")
        upgrade_head(database_url)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_server.url}
        with tempfile.TemporaryDirectory() as cwd, tempfile.TemporaryFile() as log:
            # Its own empty working folder: no .env there to override the environment.
            api_process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(port)],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                with httpx.Client(
                    base_url=f"http://127.0.0.1:{port}", timeout=30, trust_env=False
                ) as api:
                    wait_until(lambda: _answers(api, api_process, log), timeout=120, what="the API")
                    yield Stack(
                        api=api,
                        postgres=postgres,
                        redis=redis_server,
                        database_url=database_url,
                    )
            finally:
                api_process.terminate()
                api_process.wait(timeout=30)


def _answers(api: httpx.Client, process: subprocess.Popen[bytes], log: IO[bytes]) -> bool:
    if process.poll() is not None:
        log.seek(0)
        output = log.read().decode(errors="replace")[-3000:]
        raise RuntimeError(f"the API exited with status {process.returncode}:\n{output}")
    try:
        api.get("/healthz")
    except httpx.TransportError:
        return False
    return True


def timed_get(api: httpx.Client, path: str) -> tuple[httpx.Response, float]:
    """The response and how long it took."""
    began = time.monotonic()
    response = api.get(path)
    return response, time.monotonic() - began


def ready(api: httpx.Client) -> bool:
    """Whether /readyz answers 200."""
    return api.get("/readyz").status_code == 200


def test_readyz_names_redis_while_it_is_down_and_recovers(stack: Stack) -> None:
    assert ready(stack.api)
    stack.redis.stop()
    try:
        response, elapsed = timed_get(stack.api, "/readyz")
        assert response.status_code == 503
        body = response.json()
        assert body["data"] is None
        assert "Redis" in body["info"]["error"]
        assert "PostgreSQL" not in body["info"]["error"]
        assert elapsed < OUTAGE_ANSWER_SECONDS

        budget, budget_elapsed = timed_get(stack.api, "/api/budget")
        assert budget.status_code == 503
        assert budget.json() == {"data": None, "info": {"error": REDIS_UNAVAILABLE}}
        assert budget_elapsed < OUTAGE_ANSWER_SECONDS
    finally:
        stack.redis.start()
    wait_until(lambda: ready(stack.api), timeout=RECOVERY_TIMEOUT, what="ready again")


def test_postgres_outage_answers_503_and_recovers(stack: Stack) -> None:
    assert stack.api.get("/api/financial_data").status_code == 200
    stack.postgres.stop()
    try:
        readiness, readiness_elapsed = timed_get(stack.api, "/readyz")
        assert readiness.status_code == 503
        assert "PostgreSQL" in readiness.json()["info"]["error"]
        assert "Redis" not in readiness.json()["info"]["error"]
        assert readiness_elapsed < OUTAGE_ANSWER_SECONDS

        prices, prices_elapsed = timed_get(stack.api, "/api/financial_data")
        assert prices.status_code == 503
        assert prices.headers["Retry-After"] == "5"
        assert prices.json() == {"data": [], "info": {"error": DATABASE_UNAVAILABLE}}
        assert prices_elapsed < OUTAGE_ANSWER_SECONDS

        statistics, statistics_elapsed = timed_get(stack.api, STATISTICS)
        assert statistics.status_code == 503
        assert statistics.json() == {"data": None, "info": {"error": DATABASE_UNAVAILABLE}}
        assert statistics_elapsed < OUTAGE_ANSWER_SECONDS

        budget, budget_elapsed = timed_get(stack.api, "/api/budget")
        assert budget.status_code == 503
        assert budget.json() == {"data": None, "info": {"error": DATABASE_UNAVAILABLE}}
        assert budget_elapsed < OUTAGE_ANSWER_SECONDS
    finally:
        stack.postgres.start()
    wait_until(lambda: ready(stack.api), timeout=RECOVERY_TIMEOUT, what="ready again")
    recovered = stack.api.get("/api/financial_data")
    assert recovered.status_code == 200
    assert recovered.json()["info"]["error"] == ""


def test_readyz_names_both_when_both_are_down(stack: Stack) -> None:
    stack.redis.stop()
    stack.postgres.stop()
    try:
        response = stack.api.get("/readyz")
        assert response.status_code == 503
        assert "PostgreSQL and Redis" in response.json()["info"]["error"]
    finally:
        stack.postgres.start()
        stack.redis.start()
    wait_until(lambda: ready(stack.api), timeout=RECOVERY_TIMEOUT, what="ready again")


def _read_statuses(api: httpx.Client, pool: ThreadPoolExecutor, count: int) -> list[int]:
    paths = ["/api/financial_data", STATISTICS] * (count // 2)
    return [response.status_code for response in pool.map(api.get, paths)]


def test_pooled_read_connections_survive_a_postgres_restart(stack: Stack) -> None:
    with ThreadPoolExecutor(READERS) as pool:
        # Statistics of an empty table are a 404: the read itself worked.
        assert set(_read_statuses(stack.api, pool, READERS)) == {200, 404}
        stack.postgres.stop()
        stack.postgres.start()  # returns once PostgreSQL accepts connections again
        # Every pooled connection died with the old server; no reader may see that.
        assert set(_read_statuses(stack.api, pool, READERS)) == {200, 404}


def test_read_whose_connection_is_killed_mid_query_is_run_again(stack: Stack) -> None:
    engine = create_engine(stack.database_url, poolclass=NullPool)
    try:
        with engine.connect() as locker, ThreadPoolExecutor(1) as pool:
            # The read waits for this lock, so its connection can be killed while it runs.
            locker.execute(text("LOCK TABLE financial_data IN ACCESS EXCLUSIVE MODE"))
            pending = pool.submit(stack.api.get, "/api/financial_data")
            # Autocommit: pg_stat_activity is read once per transaction.
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as admin:
                waiting = wait_until(
                    lambda: admin.execute(_WAITING_READS).scalars().all(),
                    timeout=10,
                    what="the read waiting for the lock",
                )
                killed = admin.execute(_TERMINATE, {"pids": waiting}).scalars().all()
            assert killed == [True]
            locker.rollback()
            response = pending.result(timeout=30)
    finally:
        engine.dispose()
    assert response.status_code == 200
    assert response.json()["info"] == {"error": ""}


_WAITING_READS = text(
    "SELECT pid FROM pg_stat_activity"
    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
)
_TERMINATE = text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid")
