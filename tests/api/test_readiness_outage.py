"""Readiness and data endpoints while PostgreSQL or Redis is down, and after they come back.

The API runs as its own uvicorn process pointed at a PostgreSQL and a Redis that these tests
stop and start (the suite's shared servers must stay up for everyone else).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import httpx
import pytest

from stockpile.localstack import EmbeddedPostgres, EmbeddedRedis, start_postgres, start_redis
from stockpile.migrations import upgrade_head
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# The bound the contract's "503 when a dependency is down" must meet: no request hangs.
OUTAGE_ANSWER_SECONDS = 10.0
RECOVERY_TIMEOUT = 30.0


@dataclass
class Stack:
    """An API process and the servers it depends on, which the tests may stop."""

    api: httpx.Client
    postgres: EmbeddedPostgres
    redis: EmbeddedRedis


def free_port() -> int:
    """A loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
                    yield Stack(api=api, postgres=postgres, redis=redis_server)
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
        body = prices.json()
        assert body["data"] == []
        assert body["info"]["error"]
        assert prices_elapsed < OUTAGE_ANSWER_SECONDS
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
