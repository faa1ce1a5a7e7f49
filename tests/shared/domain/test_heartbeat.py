"""The lease heartbeat against a real PostgreSQL: it renews while the block runs, and only then."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from shared.core.db import autocommit_connection
from shared.core.models import Job
from shared.domain.heartbeat import LeaseTerms, heartbeat
from shared.domain.jobs.lifecycle import claim_job, succeed_job
from tests.reliability.harness import create_jobs
from tests.support import wait_until

TERMS = LeaseTerms(window=timedelta(seconds=1.5), hard_bound=timedelta(seconds=300))
WORKER = "host:1"


def _claim(job_id: uuid.UUID, worker: str = WORKER, terms: LeaseTerms = TERMS) -> Job:
    with autocommit_connection() as connection:
        claim = claim_job(connection, job_id, worker=worker, lease=terms.first_lease)
    assert claim is not None
    return claim.job


def _lease(engine: Engine, job_id: uuid.UUID) -> datetime:
    with engine.connect() as conn:
        lease: datetime = conn.execute(
            text("SELECT lease_expires_at FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
    return lease


def test_heartbeat_renews_during_the_block_and_never_after(engine: Engine) -> None:
    ended_id, running_id = create_jobs(engine, ["ENDED", "RUNNING"])
    ended, running = _claim(ended_id), _claim(running_id)
    assert ended.started_at is not None
    assert running.started_at is not None
    with heartbeat(running_id, worker=WORKER, claimed_at=running.started_at, terms=TERMS):
        first = _lease(engine, ended_id)
        with heartbeat(ended_id, worker=WORKER, claimed_at=ended.started_at, terms=TERMS):
            wait_until(lambda: _lease(engine, ended_id) > first, timeout=10, what="a renewal")
        stopped_at = _lease(engine, ended_id)
        # The other job's heartbeat is the clock: three of its renewals, none of the ended one's
        # (whose row would still accept a renewal: running, held by this worker, same claim).
        seen = {_lease(engine, running_id)}

        def renewed_three_times() -> bool:
            seen.add(_lease(engine, running_id))
            return len(seen) > 3

        wait_until(
            renewed_three_times,
            timeout=15,
            interval=0.05,
            what="three renewals of the running job",
        )
        assert _lease(engine, ended_id) == stopped_at


def test_heartbeat_stops_once_another_worker_took_the_job(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    [job_id] = create_jobs(engine, ["TAKEN"])
    job = _claim(job_id)
    assert job.started_at is not None
    with engine.begin() as conn:  # as after a lapse: the lease expired and another claimed it
        conn.execute(
            text("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :id"),
            {"id": job_id},
        )
    taker = _claim(job_id, worker="taker:2")
    with (
        caplog.at_level(logging.WARNING, logger="shared.domain.heartbeat"),
        heartbeat(job_id, worker=WORKER, claimed_at=job.started_at, terms=TERMS),
    ):
        wait_until(lambda: "lost the claim" in caplog.text, timeout=10, what="the loss")
    assert _lease(engine, job_id) == taker.lease_expires_at


def _renewal_waits_on_a_lock(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE jobs SET lease_expires_at%'"
                )
            ).scalar_one()
        )


def test_a_renewal_that_meets_the_runs_own_finish_is_no_loss(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # A run commits its outcome a moment before it releases the claim; a renewal due in between
    # finds the job no longer running. Seen in a 60 s call whose twelfth renewal met its finish.
    [job_id] = create_jobs(engine, ["ENDING"])
    job = _claim(job_id)
    assert job.started_at is not None
    with caplog.at_level(logging.WARNING, logger="shared.domain.heartbeat"):
        with (
            heartbeat(job_id, worker=WORKER, claimed_at=job.started_at, terms=TERMS),
            Session(engine) as session,
        ):
            assert succeed_job(session, job_id, worker=WORKER, rows_written=0, detail=None)
            # The next renewal waits for the finishing transaction's row lock ...
            wait_until(lambda: _renewal_waits_on_a_lock(engine), timeout=10, what="a renewal")
            session.commit()  # ... and then finds the job succeeded
        assert not _renewal_waits_on_a_lock(engine)
    assert "lost the claim" not in caplog.text
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar_one()
            == "succeeded"
        )
