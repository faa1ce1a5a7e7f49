"""Worker deaths mid-call cost one heartbeat window, not a lease; live workers keep their jobs.

Real prefork workers, beat and the sandbox AlphaVantage (every call takes CALL_SECONDS). The
lease (JOB_LEASE_SECONDS) is at its default of 300 s throughout: recovery must not wait for it.
The SIGKILL tests also keep the heartbeat window (15 s) and beat's tick (10 s) at their defaults;
the long-call test keeps the window at 15 s too.
"""

from __future__ import annotations

import logging
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import pytest
from sqlalchemy import Engine, text

from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_beat, celery_worker
from tests.reliability.harness import (
    create_jobs,
    price_row_counts,
    wait_all_finished,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

CALL_SECONDS = 6.0
# Recovery bound after a death (the requirement), on top of the rerun's own call.
RECOVERY_SECONDS = 30.0
# The production defaults of everything recovery depends on (the suite shortens some of them).
DEFAULTS = {"JOB_LEASE_SECONDS": "300", "DISPATCH_INTERVAL_SECONDS": "10"}
# The paused worker's window: short, so that its claim lapses soon after the pause.
SHORT_WINDOW = {"JOB_LEASE_SECONDS": "300", "JOB_HEARTBEAT_TIMEOUT_SECONDS": "3"}
# The production window (the default, spelled out), under the suite's 1 s dispatcher tick.
PRODUCTION_WINDOW = {"JOB_LEASE_SECONDS": "300", "JOB_HEARTBEAT_TIMEOUT_SECONDS": "15"}


@pytest.fixture
def beat(engine: Engine) -> Iterator[Process]:
    with celery_beat({}) as process:
        yield process


@pytest.fixture
def beat_at_defaults(engine: Engine) -> Iterator[Process]:
    with celery_beat(DEFAULTS) as process:
        yield process


@dataclass(frozen=True, slots=True)
class Running:
    """A running job in the middle of its upstream call."""

    job_id: uuid.UUID
    pid: int
    attempts: int


def _in_calls(engine: Engine, job_ids: list[uuid.UUID]) -> list[Running] | None:
    """The jobs once every one is running and waiting for its call's answer; None before."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT id, worker, attempts FROM jobs j
                WHERE id = ANY(:ids) AND status = 'running' AND EXISTS (
                    SELECT 1 FROM api_calls c WHERE c.job_id = j.id AND c.outcome = 'pending'
                      AND c.called_at >= j.started_at)
                """
            ),
            {"ids": job_ids},
        ).all()
    if len(rows) != len(job_ids):
        return None
    return [Running(row.id, int(row.worker.rsplit(":", 1)[1]), row.attempts) for row in rows]


def _two_jobs_in_calls(engine: Engine, symbols: list[str]) -> tuple[list[uuid.UUID], list[Running]]:
    """Create the jobs (PostgreSQL only: beat sends them) and wait until both are mid-call."""
    job_ids = create_jobs(engine, symbols)
    running = wait_until(lambda: _in_calls(engine, job_ids), timeout=60, what="both calls")
    return job_ids, running


def _database_now(engine: Engine) -> datetime:
    with engine.connect() as conn:
        now: datetime = conn.execute(text("SELECT now()")).scalar_one()
    return now


def _assert_recovered_once(engine: Engine, job_ids: list[uuid.UUID], killed_at: datetime) -> None:
    """Each job succeeded on its second attempt, in time, with its killed call still audited."""
    rows = wait_all_finished(engine, len(job_ids), timeout=RECOVERY_SECONDS + CALL_SECONDS + 30)
    assert [row.status for row in rows] == ["succeeded"] * len(job_ids), rows
    assert [row.attempts for row in rows] == [2] * len(job_ids), rows
    assert price_row_counts(engine) == (100 * len(job_ids), 100 * len(job_ids))
    with engine.connect() as conn:
        for job_id in job_ids:
            calls = conn.execute(
                text("SELECT outcome FROM api_calls WHERE job_id = :id ORDER BY called_at"),
                {"id": job_id},
            ).scalars()
            assert list(calls) == ["pending", "ok"]  # the killed call still counts
        started, finished = conn.execute(
            text(
                "SELECT extract(epoch FROM max(started_at) - :killed),"
                " extract(epoch FROM max(finished_at) - :killed) FROM jobs WHERE id = ANY(:ids)"
            ),
            {"killed": killed_at, "ids": job_ids},
        ).one()
    logger.info("recovery: reruns started %.1f s, done %.1f s after the kill", started, finished)
    assert float(started) <= RECOVERY_SECONDS, f"reruns started {started} s after the kill"
    assert float(finished) <= RECOVERY_SECONDS + CALL_SECONDS, f"done {finished} s after"


@pytest.mark.usefixtures("beat_at_defaults")
def test_sigkill_of_a_whole_worker_mid_calls_reruns_both_jobs_within_seconds(
    engine: Engine, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=CALL_SECONDS)
    with celery_worker(DEFAULTS, name="doomed") as doomed:
        job_ids, running = _two_jobs_in_calls(engine, ["KILLA", "KILLB"])
        assert {job.pid for job in running} <= {child.pid for child in doomed.children()}
        killed_at = _database_now(engine)
        doomed.kill()
    # A restart policy brings a worker back (here: a fresh one, as compose would).
    with celery_worker(DEFAULTS, name="successor"):
        _assert_recovered_once(engine, job_ids, killed_at)


@pytest.mark.usefixtures("beat_at_defaults")
def test_sigkill_of_the_pool_processes_mid_calls_reruns_both_jobs_within_seconds(
    engine: Engine, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=CALL_SECONDS)
    with celery_worker(DEFAULTS, name="children-die") as worker:
        job_ids, running = _two_jobs_in_calls(engine, ["OOMA", "OOMB"])
        killed_at = _database_now(engine)
        for job in running:  # as the OOM killer would: the pool processes, not the worker
            os.kill(job.pid, signal.SIGKILL)
        _assert_recovered_once(engine, job_ids, killed_at)
        worker.check_alive()


@pytest.mark.usefixtures("beat")
def test_a_call_longer_than_the_heartbeat_window_runs_once_on_a_live_worker(
    engine: Engine, sandbox: SandboxHandle
) -> None:
    # The production window (15 s, renewals every 5 s) and a 60 s call: four windows, the
    # issue's example. The dispatcher ticks every second (the suite's), so a lapse would be
    # acted on at once. The client's timeout is raised above the call; the hard time limit
    # stays 0.75 × JOB_LEASE_SECONDS (225 s).
    call_seconds = 60.0
    sandbox.configure(latency_seconds=call_seconds)
    env = {**PRODUCTION_WINDOW, "ALPHAVANTAGE_TIMEOUT_SECONDS": "90"}
    with celery_worker(env, name="slow-a") as first, celery_worker(env, name="slow-b") as second:
        [job_id] = create_jobs(engine, ["LONGCALL"])
        holders: set[tuple[str, datetime]] = set()
        leases: set[datetime] = set()

        def watch() -> bool:
            with engine.connect() as conn:
                row = conn.execute(
                    text(
                        "SELECT status, worker, started_at, lease_expires_at, attempts"
                        " FROM jobs WHERE id = :id"
                    ),
                    {"id": job_id},
                ).one()
            if row.status == "running":
                holders.add((row.worker, row.started_at))
                leases.add(row.lease_expires_at)
                assert row.attempts <= 1, row
            return row.status in ("succeeded", "failed")

        wait_until(watch, timeout=call_seconds + 60, interval=0.2, what="the long call")
        logs = first.log() + second.log()
    [row] = wait_all_finished(engine, 1, timeout=5)
    assert (row.status, row.attempts) == ("succeeded", 1), row
    assert len(holders) == 1, holders  # never claimed a second time
    assert len(leases) >= 3, leases  # the heartbeat renewed the lease during the call
    assert [call.symbol for call in sandbox.stats().calls] == ["LONGCALL"]
    assert "lost the claim" not in logs


def _job_state(engine: Engine, job_id: uuid.UUID) -> tuple[object, ...]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT status, worker, started_at, finished_at, rows_written, detail,"
                " lease_expires_at, attempts,"
                " (SELECT max(updated_at) FROM financial_data WHERE symbol = j.symbol)"
                " FROM jobs j WHERE id = :id"
            ),
            {"id": job_id},
        ).one()
    return tuple(row)


def test_a_worker_paused_past_its_lease_does_not_overwrite_the_new_claim(
    engine: Engine, sandbox: SandboxHandle, beat: Process
) -> None:
    sandbox.configure(latency_seconds=CALL_SECONDS)
    # Its answer must still be in time when it resumes, so that it does try to write the result.
    patient = {**SHORT_WINDOW, "ALPHAVANTAGE_TIMEOUT_SECONDS": "120"}
    with celery_worker(patient, name="paused") as paused:
        [job_id] = create_jobs(engine, ["PAUSED"])
        [held] = wait_until(lambda: _in_calls(engine, [job_id]), timeout=30, what="the call")
        os.killpg(paused.pid, signal.SIGSTOP)  # the worker and its pool processes
        try:
            # The taker's own window is the production one: on a loaded machine a 3 s window
            # could lapse under it too, and a third claim would make a third call.
            with celery_worker(PRODUCTION_WINDOW, name="taker"):
                [row] = wait_all_finished(engine, 1, timeout=RECOVERY_SECONDS + CALL_SECONDS)
            assert row.status == "succeeded", row
            assert row.worker is not None
            assert int(row.worker.rsplit(":", 1)[1]) != held.pid
            settled = _job_state(engine, job_id)
        finally:
            os.killpg(paused.pid, signal.SIGCONT)
        # Resumed, the paused process gets its answer and tries to finish the job it lost.
        paused.wait_for_log("another worker holds it now; result dropped", timeout=30)
        paused.wait_for_log("'not_claimed'", timeout=30)
        with engine.connect() as conn:
            outcomes = conn.execute(
                text("SELECT outcome FROM api_calls WHERE job_id = :id ORDER BY called_at"),
                {"id": job_id},
            ).scalars()
            assert list(outcomes) == ["ok", "ok"]  # both calls audited, the paused one included
    assert _job_state(engine, job_id) == settled  # not a field of the new claim's result changed
    assert price_row_counts(engine) == (100, 100)
