"""A job's life on a worker against real PostgreSQL: each step only for the job's holder."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Engine, text
from sqlmodel import Session

from shared.core.db import autocommit_connection
from shared.core.models import Job, JobStatus
from shared.domain.jobs.lifecycle import (
    claim_job,
    fail_job,
    renew_lease,
    requeue_job,
    succeed_job,
)
from tests.reliability.harness import create_jobs

WORKER = "host:1"
LEASE = timedelta(seconds=15)


def _claim(job_id: uuid.UUID, worker: str = WORKER) -> Job | None:
    with autocommit_connection() as connection:
        claim = claim_job(connection, job_id, worker=worker, lease=LEASE)
    return None if claim is None else claim.job


def _claimed(job_id: uuid.UUID) -> Job:
    job = _claim(job_id)
    assert job is not None
    return job


def _set(engine: Engine, job_id: uuid.UUID, assignments: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE jobs SET {assignments} WHERE id = :id"), {"id": job_id})


def _renew(job: Job, *, worker: str = WORKER, claimed_at: datetime | None = None) -> object:
    with autocommit_connection() as connection:
        return renew_lease(
            connection,
            job.id,
            worker=worker,
            claimed_at=claimed_at or job.started_at or datetime.min,
            window=LEASE,
            hard_bound=timedelta(seconds=300),
        )


def test_claim_takes_a_due_job_or_an_abandoned_one_and_nothing_else(engine: Engine) -> None:
    [job_id] = create_jobs(engine, ["DUE"])
    _set(engine, job_id, "not_before = now() + interval '1 hour'")
    assert _claim(job_id) is None  # held back
    _set(engine, job_id, "not_before = now() - interval '1 s'")
    job = _claimed(job_id)
    assert (job.status, job.worker) == (JobStatus.RUNNING, WORKER)
    assert _claim(job_id, worker="other:2") is None  # its lease runs
    _set(engine, job_id, "lease_expires_at = now() - interval '1 s'")
    taken = _claim(job_id, worker="other:2")  # abandoned
    assert taken is not None
    assert taken.worker == "other:2"


def test_renewal_needs_the_same_worker_and_the_same_claim(engine: Engine) -> None:
    [job_id] = create_jobs(engine, ["CLAIMED"])
    job = _claimed(job_id)
    assert _renew(job, worker="other:2") is None
    assert _renew(job, claimed_at=datetime(2000, 1, 1).astimezone()) is None
    assert isinstance(_renew(job), datetime)


def test_renewal_never_extends_past_the_hard_bound(engine: Engine) -> None:
    [job_id] = create_jobs(engine, ["BOUNDED"])
    job = _claimed(job_id)
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


def test_requeue_gives_the_job_back_and_refunds_an_attempt_only_when_asked(
    engine: Engine, session: Session
) -> None:
    [job_id] = create_jobs(engine, ["REQUEUED"])
    _claimed(job_id)
    _set(engine, job_id, "attempts = 2, dispatched_at = now()")
    later = datetime.now().astimezone() + timedelta(minutes=5)

    kept = requeue_job(session, job_id, worker=WORKER, not_before=later, detail="backoff")
    session.commit()
    assert kept is not None
    assert (kept.status, kept.attempts, kept.not_before, kept.detail) == (
        JobStatus.QUEUED,
        2,
        later,
        "backoff",
    )
    assert (kept.worker, kept.lease_expires_at, kept.dispatched_at) == (None, None, None)

    _set(engine, job_id, "not_before = NULL")
    _claimed(job_id)
    refunded = requeue_job(session, job_id, worker=WORKER, not_before=None, refund_attempt=True)
    session.commit()
    assert refunded is not None
    assert refunded.attempts == 1


def test_only_the_holder_finishes_a_job(engine: Engine, session: Session) -> None:
    done_id, failed_id = create_jobs(engine, ["DONE", "FAILED"])
    for job_id in (done_id, failed_id):
        _claimed(job_id)
        assert succeed_job(session, job_id, worker="other:2", rows_written=1, detail=None) is None
        assert fail_job(session, job_id, worker="other:2", code="bad", message="no") is None
        assert requeue_job(session, job_id, worker="other:2", not_before=None) is None

    done = succeed_job(session, done_id, worker=WORKER, rows_written=7, detail="fetched")
    failed = fail_job(session, failed_id, worker=WORKER, code="invalid_symbol", message="none")
    session.commit()

    assert done is not None
    assert failed is not None
    assert (done.status, done.rows_written, done.detail) == (JobStatus.SUCCEEDED, 7, "fetched")
    assert (failed.status, failed.error_code, failed.error_message) == (
        JobStatus.FAILED,
        "invalid_symbol",
        "none",
    )
    for job in (done, failed):
        assert job.finished_at is not None
        assert job.lease_expires_at is None
    assert succeed_job(session, done_id, worker=WORKER, rows_written=1, detail=None) is None
