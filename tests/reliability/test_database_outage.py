"""PostgreSQL stopped while jobs are queued and mid-call, then started again: the worker side.

Workers and beat run against a throwaway PostgreSQL these tests control (Redis is the suite's).
The workers must survive the outage (same processes), and every job must finish afterwards
without anyone touching anything. (The API's 503s are tests/api/test_readiness_outage.py's.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import create_engine

from stockpile.localstack import EmbeddedPostgres, start_postgres
from stockpile.migrations import upgrade_head
from stockpile.sandbox.server import SandboxHandle
from tests.processes import celery_beat, celery_worker
from tests.reliability.harness import (
    clear_tracked_symbols,
    count_rows,
    create_jobs,
    enter_together,
    job_rows,
    price_row_counts,
    wait_all_finished,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

JOBS = 8
ROWS_PER_JOB = 100
OUTAGE_SECONDS = 5.0


@pytest.fixture
def postgres() -> Iterator[EmbeddedPostgres]:
    with start_postgres() as server:
        yield server


@pytest.fixture
def database_engine(postgres: EmbeddedPostgres) -> Iterator[Engine]:
    url = postgres.create_database("stockpile")
    upgrade_head(url)
    # No pool: each poll opens its own connection, so the outage leaves nothing stale here.
    engine = create_engine(url, poolclass=NullPool)
    clear_tracked_symbols(engine)
    yield engine
    engine.dispose()


def test_jobs_in_flight_finish_after_postgres_restarts(
    postgres: EmbeddedPostgres, database_engine: Engine, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=1.5)
    env = {"DATABASE_URL": database_engine.url.render_as_string(hide_password=False)}
    with ExitStack() as stack:
        worker, _ = enter_together(
            stack, celery_worker(env, name="pg-w"), celery_beat(env, name="pg-beat")
        )
        children = {child.pid for child in worker.children()}
        create_jobs(database_engine, [f"PGO{i:02d}" for i in range(JOBS)])
        wait_until(
            lambda: sum(row.status == "running" for row in job_rows(database_engine)) >= 2,
            timeout=60,
            what="two calls in flight",
        )
        began = time.monotonic()
        postgres.stop()
        time.sleep(OUTAGE_SECONDS)
        postgres.start()
        rows = wait_all_finished(database_engine, JOBS, timeout=120)
        logger.info(
            "database outage: %d jobs finished %.1f s after the stop",
            JOBS,
            time.monotonic() - began,
        )
        assert worker.popen.poll() is None
        assert {child.pid for child in worker.children()} == children  # no pool child died
        log = worker.log()
    assert [row.status for row in rows] == ["succeeded"] * JOBS, rows
    assert price_row_counts(database_engine) == (JOBS * ROWS_PER_JOB, JOBS * ROWS_PER_JOB)
    ok_calls = count_rows(database_engine, "SELECT count(*) FROM api_calls WHERE outcome = 'ok'")
    assert ok_calls >= JOBS
    assert "OperationalError" in log  # the outage did hit the workers
