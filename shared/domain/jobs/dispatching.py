"""What the dispatcher asks of the jobs table: due jobs, lapsed leases, jobs sent and waiting."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import (
    BigInteger,
    Interval,
    bindparam,
    case,
    exists,
    extract,
    func,
    literal,
    select,
    update,
)
from sqlmodel import Session

from shared.core.batches import locked_batch
from shared.core.models import JobStatus, utcnow
from shared.domain.jobs.table import IS_QUEUED, IS_RUNNING, JOBS, NOT_HELD_BACK

_DISPATCH_LOCK_KEY = 0x53544F434B  # "STOCK"

_RESEND_AFTER = bindparam("resend_after", type_=Interval)
# Not on its way to a worker: never sent, or sent longer ago than :resend_after.
_NOT_SENT_RECENTLY = JOBS.c.dispatched_at.is_(None) | (
    JOBS.c.dispatched_at < func.now() - _RESEND_AFTER
)

_RELEASE_EXPIRED = (
    update(JOBS)
    # Reads running jobs only (ix_jobs_status_created_at), however long the queue.
    .where(IS_RUNNING, JOBS.c.lease_expires_at < func.now())
    .values(status=JobStatus.QUEUED, worker=None, lease_expires_at=None, dispatched_at=None)
)


def release_expired_leases(session: Session) -> int:
    """Put running jobs whose worker vanished back in the queue; how many were released."""
    return session.connection().execute(_RELEASE_EXPIRED).rowcount


_FIRST_LAPSE = select(extract("epoch", func.min(JOBS.c.lease_expires_at) - func.now())).where(
    IS_RUNNING,
    JOBS.c.lease_expires_at < func.now() + bindparam("half_window", type_=Interval),
)


def seconds_until_lease_lapses(session: Session, *, window: timedelta) -> float | None:
    """Seconds until the first lease that missed its renewals lapses; None: no such lease.

    A live holder renews every third of `window`, so its lease always ends more than half a
    window away; one ending sooner missed a renewal, and its holder is probably dead.
    """
    value = session.connection().execute(_FIRST_LAPSE, {"half_window": window / 2}).scalar_one()
    return None if value is None else max(0.0, float(value))


_DUE = locked_batch(
    select(JOBS.c.id)
    .where(IS_QUEUED, NOT_HELD_BACK, _NOT_SENT_RECENTLY)
    .order_by(JOBS.c.created_at),
    name="due",
    size=bindparam("budget"),
)
_TAKE_DUE = (
    update(JOBS)
    .where(JOBS.c.id == _DUE.c.id)
    .values(dispatched_at=func.now())
    .returning(JOBS.c.id, JOBS.c.created_at)
)


def take_due_jobs(session: Session, *, budget: int, resend_after: timedelta) -> list[uuid.UUID]:
    """Mark up to `budget` due queued jobs as dispatched, oldest first; commit, then send them."""
    if budget <= 0:
        return []
    rows = (
        session.connection()
        .execute(_TAKE_DUE, {"budget": budget, "resend_after": resend_after})
        .all()
    )
    return [row.id for row in sorted(rows, key=lambda row: row.created_at)]


_LOCK_DISPATCH = select(func.pg_advisory_xact_lock(literal(_DISPATCH_LOCK_KEY, BigInteger)))


def lock_dispatch(session: Session) -> None:
    """Hold the dispatcher's lock until the transaction ends: one budget reading at a time."""
    session.connection().execute(_LOCK_DISPATCH)


# Two index walks that stop at their first match (a job due now; else the earliest
# `not_before` of ix_jobs_due), not a minimum over the whole backlog.
_SECONDS_UNTIL_DUE = select(
    case(
        (exists().where(IS_QUEUED, NOT_HELD_BACK, _NOT_SENT_RECENTLY), 0),
        else_=select(extract("epoch", func.min(JOBS.c.not_before) - func.now()))
        .where(IS_QUEUED, JOBS.c.not_before > func.now(), _NOT_SENT_RECENTLY)
        .scalar_subquery(),
    )
)


def seconds_until_due(session: Session, *, resend_after: timedelta) -> float | None:
    """Seconds until a queued job not on its way to a worker is due (0: now); None: no such job."""
    value = (
        session.connection()
        .execute(_SECONDS_UNTIL_DUE, {"resend_after": resend_after})
        .scalar_one()
    )
    return None if value is None else max(0.0, float(value))


# A range of the partial index ix_jobs_queued_dispatched_at, however long the backlog.
_COUNT_SENT = (
    select(func.count())
    .select_from(JOBS)
    .where(IS_QUEUED, JOBS.c.dispatched_at >= func.now() - _RESEND_AFTER)
)


def count_dispatched_waiting(session: Session, *, resend_after: timedelta) -> int:
    """Queued jobs already sent to the broker recently: they will spend budget soon."""
    count = session.connection().execute(_COUNT_SENT, {"resend_after": resend_after}).scalar_one()
    return int(count)


_MARK_DISPATCHED = (
    update(JOBS).where(JOBS.c.id == bindparam("job_id")).values(dispatched_at=bindparam("sent_at"))
)


def mark_dispatched(session: Session, job_id: uuid.UUID) -> None:
    """Remember that the job was just sent, so the dispatcher does not send it again at once."""
    session.connection().execute(_MARK_DISPATCHED, {"job_id": job_id, "sent_at": utcnow()})
