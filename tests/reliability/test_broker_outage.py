"""Redis (broker and limiter) stopped under load, then started with or without its data.

Workers and beat run against a throwaway Redis these tests control; PostgreSQL is the suite's.
No job may be lost (the dispatcher repairs from PostgreSQL), and a Redis that lost its data must
not let the fleet spend calls the audit log says were already made.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from sqlalchemy import Engine

from stockpile.localstack import EmbeddedRedis, start_redis
from stockpile.sandbox.server import SandboxHandle
from tests.processes import celery_beat, celery_worker
from tests.reliability.harness import (
    create_jobs,
    enter_together,
    job_rows,
    price_row_counts,
    send_jobs_to_broker,
    wait_all_finished,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

OUTAGE_SECONDS = 3.0
JOBS_PER_OUTAGE = 8
ROWS_PER_JOB = 100
# A short window keeps the test short; the re-seeding works the same for minutes or days.
WINDOW_SECONDS = 30
WINDOW_LIMIT = 5
SEEDED_LOG = f"seeded 1 window(s) from {WINDOW_LIMIT} recent call(s)"
CONNECTED_LOG = "Connected to redis://"
# Beat's dispatch tick (every second here) while Redis is down: worker/beat_log.py.
BEAT_OUTAGE_LOG = (
    "WARNING celery.beat: beat: broker unreachable, dispatch-due-jobs not sent this tick"
)
DISPATCH_DONE = re.compile(r"Task stockpile\.dispatch_due_jobs\[[^\]]+\] succeeded")
# A line of beat's log after its banner: one record, on one line, nothing above WARNING.
BEAT_LINE = re.compile(r"\S+ \S+ (INFO|WARNING) [\w.]+: .*")


@pytest.fixture
def broker() -> Iterator[EmbeddedRedis]:
    with start_redis() as server:
        yield server


def _calls_in_flight(engine: Engine) -> bool:
    statuses = [row.status for row in job_rows(engine)]
    return statuses.count("running") >= 1 and statuses.count("queued") >= 1


def test_every_job_finishes_across_broker_restarts_with_and_without_data(
    engine: Engine, broker: EmbeddedRedis, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=1.0)
    env = {"REDIS_URL": broker.url}
    total = 0
    with ExitStack() as stack:
        worker, beat = enter_together(
            stack, celery_worker(env, name="broker-w"), celery_beat(env, name="broker-beat")
        )
        for wipe in (False, True):
            symbols = [f"BRK{int(wipe)}{i:02d}" for i in range(JOBS_PER_OUTAGE)]
            create_jobs(engine, symbols)
            total += len(symbols)
            wait_until(lambda: _calls_in_flight(engine), timeout=60, what="calls in flight")
            warned = beat.log().count(BEAT_OUTAGE_LOG)
            began = time.monotonic()
            broker.stop()
            time.sleep(OUTAGE_SECONDS)
            wait_until(
                lambda: beat.log().count(BEAT_OUTAGE_LOG) > warned,  # noqa: B023 (called at once)
                timeout=30,
                what="beat's warning of a missed tick",
            )
            restarted_at = len(worker.log())
            broker.start(wipe=wipe)
            rows = wait_all_finished(engine, total, timeout=120)
            # Beat's schedule resumed: a dispatch tick sent after the restart ran on the worker
            # (one sent before the stop expired after a second, so it cannot be this one).
            wait_until(
                lambda: DISPATCH_DONE.search(worker.log(), restarted_at),  # noqa: B023 (called at once)
                timeout=30,
                what="a dispatch tick sent after the restart",
            )
            logger.info(
                "broker outage (wipe=%s): %d jobs finished %.1f s after the stop",
                wipe,
                len(symbols),
                time.monotonic() - began,
            )
            assert worker.popen.poll() is None  # the worker reconnected; it never died
        log = worker.log()
        beat_log = beat.log()
    assert [row.status for row in rows] == ["succeeded"] * total, rows
    assert len({row.symbol for row in rows}) == total
    assert price_row_counts(engine) == (total * ROWS_PER_JOB, total * ROWS_PER_JOB)
    assert "Connection to broker lost" in log
    # Workers run without gossip (`QUIET_WORKER_OPTIONS` of stockpile.devstack.processes, as in
    # compose): the reconnection logs no "Error on restarting Gossip" traceback, and no other
    # traceback either (an operator reads one as a fault); the lost connection is one warning.
    assert "Gossip" not in log
    assert "Traceback" not in log, log
    # Beat says each tick it missed in one warning line (worker/beat_log.py), not Celery's
    # "Message Error" with a stack and a traceback: nothing but single INFO/WARNING lines.
    assert beat_log.count(BEAT_OUTAGE_LOG) >= 2, beat_log
    lines = beat_log.splitlines()
    records = lines[next(i for i, line in enumerate(lines) if "beat: Starting" in line) :]
    assert [line for line in records if not BEAT_LINE.fullmatch(line)] == [], beat_log
    assert "Traceback" not in beat_log, beat_log


def test_rate_limit_holds_after_the_broker_restarts_without_its_data(
    engine: Engine, broker: EmbeddedRedis, sandbox: SandboxHandle
) -> None:
    env = {
        "REDIS_URL": broker.url,
        "ALPHAVANTAGE_RATE_LIMITS": f"{WINDOW_LIMIT}/{WINDOW_SECONDS}second",
    }
    with ExitStack() as stack:
        worker, _ = enter_together(
            stack, celery_worker(env, name="limit-w"), celery_beat(env, name="limit-beat")
        )
        create_jobs(engine, [f"RLA{i}" for i in range(WINDOW_LIMIT)])
        wait_all_finished(engine, WINDOW_LIMIT, timeout=60)
        first_call = min(call.t for call in sandbox.stats().calls)
        broker.stop()
        broker.start(wipe=True)  # the window's five calls are gone from Redis
        # Celery's reconnection backs off; on a loaded machine it can take most of the window.
        wait_until(
            lambda: worker.log().count(CONNECTED_LOG) >= 2,
            timeout=WINDOW_SECONDS,
            what="the worker to reconnect",
        )
        late = create_jobs(engine, [f"RLB{i}" for i in range(3)])
        # Straight to the workers: the limiter itself must refuse, not only the dispatcher.
        send_jobs_to_broker(broker.url, late)
        sent_at = time.time()
        assert sent_at < first_call + WINDOW_SECONDS - 5, "the restart took too long to prove it"
        waiting = wait_until(
            lambda: [r for r in job_rows(engine) if r.id in late and r.not_before_set],
            timeout=WINDOW_SECONDS,
            what="a late job sent back to wait for budget",
        )
        assert all(row.status == "queued" for row in waiting)
        assert time.time() < first_call + WINDOW_SECONDS  # refused while the window was full
        rows = wait_all_finished(engine, WINDOW_LIMIT + 3, timeout=WINDOW_SECONDS + 60)
        log = worker.log()
    assert [row.status for row in rows] == ["succeeded"] * (WINDOW_LIMIT + 3), rows
    assert SEEDED_LOG in log
    times = sorted(call.t for call in sandbox.stats().calls)
    assert len(times) == WINDOW_LIMIT + 3
    # No interval of WINDOW_SECONDS holds more than WINDOW_LIMIT calls, across the restart.
    crowded = [
        (times[i], times[i + WINDOW_LIMIT])
        for i in range(len(times) - WINDOW_LIMIT)
        if times[i + WINDOW_LIMIT] - times[i] < WINDOW_SECONDS
    ]
    assert crowded == []
