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
from shared.domain.jobs.lifecycle import claim_job, renew_lease
from tests.reliability.harness import create_jobs
from tests.support import wait_until

TERMS = LeaseTerms(window=timedelta(seconds=1.5), hard_bound=timedelta(seconds=300))
WORKER = "host:1"


@pytest.fixture
def engine(session: Session) -> Engine:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return engine


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


def _renew(job: Job, *, worker: str = WORKER, claimed_at: datetime | None = None) -> object:
    with autocommit_connection() as connection:
        return renew_lease(
            connection,
            job.id,
            worker=worker,
            claimed_at=claimed_at or job.started_at or datetime.min,
            window=TERMS.window,
            hard_bound=TERMS.hard_bound,
        )


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


def test_renewal_needs_the_same_worker_and_the_same_claim(engine: Engine) -> None:
    [job_id] = create_jobs(engine, ["CLAIMED"])
    job = _claim(job_id)
    assert _renew(job, worker="other:2") is None
    assert _renew(job, claimed_at=datetime(2000, 1, 1).astimezone()) is None
    assert isinstance(_renew(job), datetime)


def test_renewal_never_extends_past_the_hard_bound(engine: Engine) -> None:
    [job_id] = create_jobs(engine, ["BOUNDED"])
    job = _claim(job_id)
    assert job.started_at is not None
    with autocommit_connection() as connection:
        expires = renew_lease(
            connection,
            job_id,
            worker=WORKER,
            claimed_at=job.started_at,
            window=timedelta(hours=1),
            hard_bound=timedelta(seconds=20),
        )
    assert expires == job.started_at + timedelta(seconds=20)


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
