"""A job's life on a worker: claim, lease renewal, the attempt, requeue, success, failure.

Every transition is a conditional UPDATE … RETURNING, so a redelivered or duplicated task can
neither run a finished job again nor run one job twice at the same time. Every job runs these
statements, so each is built once.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Integer, Interval, Update, bindparam, func, select, update
from sqlmodel import Session

from shared.core.models import Job, JobStatus
from shared.domain.jobs.table import (
    IS_QUEUED,
    IS_RUNNING,
    JOBS,
    NOT_HELD_BACK,
    PRICES,
    held_by,
    job_or_none,
)


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this worker now holds, and the newest day stored for its symbol."""

    job: Job
    stored_through: dt.date | None


# The job with id :job_id, as long as :holder holds it.
_HELD = (JOBS.c.id == bindparam("job_id")) & held_by(bindparam("holder"))

_CLAIM = (
    update(JOBS)
    .where(
        JOBS.c.id == bindparam("job_id"),
        # Due, or abandoned: its worker's lease ran out.
        (IS_QUEUED & NOT_HELD_BACK) | (IS_RUNNING & (JOBS.c.lease_expires_at < func.now())),
    )
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


# The claim's `started_at` is its token: the same process may claim the same job again later
# (after a requeue), and a heartbeat left over from the earlier claim must not renew the new one.
_RENEW = (
    update(JOBS)
    .where(_HELD, JOBS.c.started_at == bindparam("claimed_at"))
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


# One more attempt of job :job_id, counted only while :holder holds it; returns the job's id
# and symbol. A CTE, so that the audit's insert of the call about to be made selects from it:
# attempt and audit are one statement, one round trip (`shared.domain.audit.start_call`).
ATTEMPT = (
    update(JOBS)
    .where(_HELD)
    .values(attempts=JOBS.c.attempts + 1)
    .returning(JOBS.c.id, JOBS.c.symbol)
    .cte("attempt")
)

_REQUEUE = (
    update(JOBS)
    .where(_HELD)
    .values(
        status=JobStatus.QUEUED,
        not_before=bindparam("wait_until"),
        worker=None,
        lease_expires_at=None,
        dispatched_at=None,
        detail=bindparam("requeue_detail"),
        attempts=JOBS.c.attempts - bindparam("refund", type_=Integer),
    )
    .returning(*JOBS.c)
)


def requeue_job(
    session: Session,
    job_id: uuid.UUID,
    *,
    worker: str,
    not_before: datetime | None,
    detail: str | None = None,
    refund_attempt: bool = False,
) -> Job | None:
    """Give the job back to the queue until `not_before` (rate limit, backoff)."""
    result = session.connection().execute(
        _REQUEUE,
        {
            "job_id": job_id,
            "holder": worker,
            "wait_until": not_before,
            "requeue_detail": detail,
            "refund": 1 if refund_attempt else 0,
        },
    )
    return job_or_none(result)


def _finish(status: JobStatus, **values: Any) -> Update:
    """The held job ends in `status` now (PostgreSQL's clock), with `values` besides."""
    return (
        update(JOBS)
        .where(_HELD)
        .values(
            status=status, finished_at=func.now(), not_before=None, lease_expires_at=None, **values
        )
        .returning(*JOBS.c)
    )


_SUCCEED = _finish(
    JobStatus.SUCCEEDED,
    rows_written=bindparam("written"),
    detail=bindparam("outcome_detail"),
    error_code=None,
    error_message=None,
)
_FAIL = _finish(JobStatus.FAILED, error_code=bindparam("code"), error_message=bindparam("message"))


def succeed_job(
    session: Session, job_id: uuid.UUID, *, worker: str, rows_written: int, detail: str | None
) -> Job | None:
    """Mark the job done; None when this worker no longer holds it (then roll back)."""
    result = session.connection().execute(
        _SUCCEED,
        {"job_id": job_id, "holder": worker, "written": rows_written, "outcome_detail": detail},
    )
    return job_or_none(result)


def fail_job(
    session: Session, job_id: uuid.UUID, *, worker: str, code: str, message: str
) -> Job | None:
    """Mark the job failed with a contract error code and a redacted message."""
    result = session.connection().execute(
        _FAIL, {"job_id": job_id, "holder": worker, "code": code, "message": message}
    )
    return job_or_none(result)
