"""A job's life on a worker: claim, lease renewal, requeue, success, failure.

Every transition is a conditional UPDATE … RETURNING, so a redelivered or duplicated task can
neither run a finished job again nor run one job twice at the same time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Interval, bindparam, func, select, text, update
from sqlmodel import Session

from shared.core.models import (
    Job,
    JobStatus,
    OutputSize,
)
from shared.domain.jobs.table import JOBS, PRICES, held_by, job_from_row, transition


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker now holds, and the newest day stored for its symbol."""

    job: Job
    stored_through: dt.date | None


# The outer parentheses matter: SQLAlchemy does not group a text() clause, and without them
# `id = :id AND … OR …` claimed every running job with an expired lease, not only this one.
_DUE_OR_ABANDONED = text(
    "((status = 'queued' AND (not_before IS NULL OR not_before <= now()))"
    " OR (status = 'running' AND lease_expires_at < now()))"
)


# Statements every job runs (claim, succeed) are built once: building one cost as much CPU as
# executing it.
_CLAIM = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"), _DUE_OR_ABANDONED)
    .values(
        status=JobStatus.RUNNING,
        worker=bindparam("claimant"),
        started_at=func.now(),
        lease_expires_at=func.now() + bindparam("lease", type_=Interval),
    )
    .returning(
        *JOBS.c,
        select(func.max(PRICES.c.date))
        .where(PRICES.c.symbol == JOBS.c.symbol)
        .scalar_subquery()
        .label("stored_through"),
    )
)


def claim_job(
    connection: Connection, job_id: uuid.UUID, *, worker: str, lease: timedelta
) -> Claim | None:
    """Take a due queued job, or a running one whose worker's lease expired; None otherwise.

    One statement, so it needs no transaction of its own: the claim and the symbol's newest
    stored day (which decides whether and how much to fetch) come back together. `lease` is
    the first heartbeat window; `renew_lease` extends it while the worker lives.
    """
    row = connection.execute(
        _CLAIM, {"job_id": job_id, "claimant": worker, "lease": lease}
    ).one_or_none()
    if row is None:
        return None
    values = dict(row._mapping)
    latest = values.pop("stored_through")
    return Claim(job=Job(**values), stored_through=latest)


_RENEW = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("job_id"),
        held_by(bindparam("holder")),
        JOBS.c.started_at == bindparam("claimed_at"),
    )
    .values(
        # Never past the attempt's hard bound: a hung worker is presumed dead after
        # JOB_LEASE_SECONDS however faithfully its heartbeat thread keeps beating.
        lease_expires_at=func.least(
            func.now() + bindparam("window", type_=Interval),
            JOBS.c.started_at + bindparam("hard_bound", type_=Interval),
        )
    )
    .returning(JOBS.c.lease_expires_at)
)


def renew_lease(
    connection: Connection,
    job_id: uuid.UUID,
    *,
    worker: str,
    claimed_at: datetime,
    window: timedelta,
    hard_bound: timedelta,
) -> datetime | None:
    """Extend this claim's lease by `window` (capped at `hard_bound` after the claim).

    The new expiry, or None when the claim is no longer this worker's (another took it over, or
    the job ended): then nothing is written.
    """
    expires: datetime | None = connection.execute(
        _RENEW,
        {
            "job_id": job_id,
            "holder": worker,
            "claimed_at": claimed_at,
            "window": window,
            "hard_bound": hard_bound,
        },
    ).scalar_one_or_none()
    return expires


def requeue_job(
    session: Session,
    job_id: uuid.UUID,
    *,
    worker: str,
    not_before: datetime | None,
    detail: str | None = None,
    refund_attempt: bool = False,
    outputsize: OutputSize | None = None,
) -> Job | None:
    """Give the job back to the queue until `not_before` (rate limit, backoff)."""
    values: dict[str, Any] = {
        "status": JobStatus.QUEUED,
        "not_before": not_before,
        "worker": None,
        "lease_expires_at": None,
        "dispatched_at": None,
        "detail": detail,
    }
    if refund_attempt:
        values["attempts"] = JOBS.c.attempts - 1
    if outputsize is not None:
        values["outputsize"] = outputsize
    return transition(session.connection(), job_id, held_by(worker), **values)


_SUCCEED = (
    update(JOBS)
    .where(JOBS.c.id == bindparam("job_id"), held_by(bindparam("holder")))
    .values(
        status=JobStatus.SUCCEEDED,
        finished_at=func.now(),
        rows_written=bindparam("written"),
        detail=bindparam("outcome_detail"),
        not_before=None,
        lease_expires_at=None,
        error_code=None,
        error_message=None,
    )
    .returning(*JOBS.c)
)


def succeed_job(
    session: Session, job_id: uuid.UUID, *, worker: str, rows_written: int, detail: str | None
) -> Job | None:
    """Mark the job done; None when this worker no longer holds it (then roll back)."""
    row = (
        session.connection()
        .execute(
            _SUCCEED,
            {
                "job_id": job_id,
                "holder": worker,
                "written": rows_written,
                "outcome_detail": detail,
            },
        )
        .one_or_none()
    )
    return None if row is None else job_from_row(row)


def fail_job(
    session: Session, job_id: uuid.UUID, *, worker: str, code: str, message: str
) -> Job | None:
    """Mark the job failed with a contract error code and a redacted message."""
    return transition(
        session.connection(),
        job_id,
        held_by(worker),
        status=JobStatus.FAILED,
        finished_at=func.now(),
        error_code=code,
        error_message=message,
        not_before=None,
        lease_expires_at=None,
    )
