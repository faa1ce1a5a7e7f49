"""What the dispatcher asks of the jobs table: due jobs, lapsed leases, jobs sent and waiting."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import func, text, update
from sqlmodel import Session, col

from shared.core.models import (
    Job,
    JobStatus,
    utcnow,
)
from shared.domain.jobs.table import JOBS

_DISPATCH_LOCK_KEY = 0x53544F434B  # "STOCK"


def release_expired_leases(session: Session) -> int:
    """Put running jobs whose worker vanished back in the queue; how many were released."""
    result = session.execute(
        update(Job)
        # Reads running jobs only (ix_jobs_status_created_at), however long the queue.
        .where(col(Job.status) == JobStatus.RUNNING, col(Job.lease_expires_at) < func.now())
        .values(status=JobStatus.QUEUED, worker=None, lease_expires_at=None, dispatched_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def seconds_until_lease_lapses(session: Session, *, window: timedelta) -> float | None:
    """Seconds until the first lease that missed its renewals lapses; None: no such lease.

    A live holder renews every third of `window`, so its lease always ends more than half a
    window away; one ending sooner missed a renewal, and its holder is probably dead.
    """
    value = session.execute(
        text(
            """
            SELECT extract(epoch FROM min(lease_expires_at) - now())
            FROM jobs
            WHERE status = 'running' AND lease_expires_at < now() + :window / 2
            """
        ),
        {"window": window},
    ).scalar_one()
    return None if value is None else max(0.0, float(value))


def take_due_jobs(session: Session, *, budget: int, resend_after: timedelta) -> list[uuid.UUID]:
    """Mark up to `budget` due queued jobs as dispatched, oldest first; commit, then send them."""
    # Lock and limit in a materialized CTE, run once: a LIMIT inside `WHERE id IN (...)` may be
    # evaluated again by the plan (a rescan, or a re-check of a row updated meanwhile) and
    # yield more than `budget` rows.
    if budget <= 0:
        return []
    rows = session.execute(
        text(
            """
            WITH due AS MATERIALIZED (
                SELECT id FROM jobs
                WHERE status = 'queued'
                  AND (not_before IS NULL OR not_before <= now())
                  AND (dispatched_at IS NULL OR dispatched_at < now() - :resend_after)
                ORDER BY created_at
                LIMIT :budget
                FOR UPDATE SKIP LOCKED
            )
            UPDATE jobs SET dispatched_at = now()
            FROM due
            WHERE jobs.id = due.id
            RETURNING jobs.id, jobs.created_at
            """
        ),
        {"budget": budget, "resend_after": resend_after},
    ).all()
    return [row.id for row in sorted(rows, key=lambda row: row.created_at)]


def lock_dispatch(session: Session) -> None:
    """Hold the dispatcher's lock until the transaction ends: one budget reading at a time."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DISPATCH_LOCK_KEY})


def seconds_until_due(session: Session, *, resend_after: timedelta) -> float | None:
    """Seconds until a queued job not on its way to a worker is due (0: now); None: no such job.

    Two index walks that stop at their first match (ix_jobs_status_created_at for a job due
    now, ix_jobs_due for the earliest `not_before`), not a minimum over the whole backlog.
    """
    value = session.execute(
        text(
            """
            SELECT CASE
                WHEN EXISTS (
                    SELECT 1 FROM jobs
                    WHERE status = 'queued'
                      AND (not_before IS NULL OR not_before <= now())
                      AND (dispatched_at IS NULL OR dispatched_at < now() - :resend_after)
                ) THEN 0
                ELSE (
                    SELECT extract(epoch FROM min(not_before) - now())
                    FROM jobs
                    WHERE status = 'queued'
                      AND not_before > now()
                      AND (dispatched_at IS NULL OR dispatched_at < now() - :resend_after)
                )
            END
            """
        ),
        {"resend_after": resend_after},
    ).scalar_one()
    return None if value is None else max(0.0, float(value))


def count_dispatched_waiting(session: Session, *, resend_after: timedelta) -> int:
    """Queued jobs already sent to the broker recently: they will spend budget soon."""
    return int(
        session.execute(
            text(
                "SELECT count(*) FROM jobs WHERE status = 'queued'"
                " AND dispatched_at >= now() - :resend_after"
            ),
            {"resend_after": resend_after},
        ).scalar_one()
    )


def mark_dispatched(session: Session, job_id: uuid.UUID) -> None:
    """Remember that the job was just sent, so the dispatcher does not send it again at once."""
    session.connection().execute(
        update(JOBS).where(JOBS.c.id == job_id).values(dispatched_at=utcnow())
    )
