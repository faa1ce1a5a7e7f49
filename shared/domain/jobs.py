"""Job records: creation with dedupe, conditional state transitions, listing.

Every transition is a conditional UPDATE … RETURNING, so a redelivered or duplicated task can
neither run a finished job again nor run one job twice at the same time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Interval, Row, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col

from shared.core.models import (
    IN_FLIGHT_STATUSES,
    FinancialData,
    Job,
    JobStatus,
    OutputSize,
    utcnow,
)
from shared.domain.tallies import stored_jobs

# Any fixed number: the key of the transaction-level advisory lock that serializes dispatchers.
_DISPATCH_LOCK_KEY = 0x53544F434B  # "STOCK"


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """The job for a request, and whether this request created it."""

    job: Job
    created: bool


_JOBS = Job.metadata.tables["jobs"]
_PRICES = FinancialData.metadata.tables["financial_data"]


def _job(row: Row[Any]) -> Job:
    return Job(**row._mapping)


def create_job(
    session: Session,
    symbol: str,
    *,
    outputsize: OutputSize | None = None,
    source: str = "api",
) -> CreatedJob:
    """A new queued job for `symbol`, or the one already in flight; the caller commits."""
    # The partial unique index decides races between concurrent requests; the loop covers the
    # in-flight job finishing between our failed insert and the select.
    connection = session.connection()
    for _ in range(5):
        created = connection.execute(
            insert(_JOBS)
            .values(
                id=uuid.uuid4(),
                symbol=symbol,
                outputsize=outputsize,
                status=JobStatus.QUEUED,
                source=source,
                attempts=0,
                created_at=func.clock_timestamp(),
            )
            .on_conflict_do_nothing(
                index_elements=[_JOBS.c.symbol],
                index_where=text("status IN ('queued', 'running')"),
            )
            .returning(*_JOBS.c)
        ).one_or_none()
        if created is not None:
            return CreatedJob(job=_job(created), created=True)
        existing = connection.execute(
            select(_JOBS).where(_JOBS.c.symbol == symbol, _JOBS.c.status.in_(IN_FLIGHT_STATUSES))
        ).one_or_none()
        if existing is not None:
            return CreatedJob(job=_job(existing), created=False)
    raise RuntimeError(f"could not create or find an in-flight job for {symbol}")


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    """The job with this id, fresh from the database."""
    return session.get(Job, job_id, populate_existing=True)


def list_jobs(
    session: Session,
    *,
    status: JobStatus | None,
    symbol: str | None,
    limit: int,
    offset: int,
) -> tuple[Sequence[Job], int]:
    """One page of jobs, newest first, and how many match."""
    conditions: list[Any] = []
    if status is not None:
        conditions.append(Job.status == status)
    if symbol is not None:
        conditions.append(Job.symbol == symbol)
    if symbol is None:
        # The trigger-kept tallies: a count(*) would read every job (millions after a year).
        count = stored_jobs(session, status)
    else:
        # A symbol's jobs are a short range of ix_jobs_symbol_created_at.
        count = session.execute(
            select(func.count()).select_from(Job).where(*conditions)
        ).scalar_one()
    jobs = (
        session.execute(
            select(Job)
            .where(*conditions)
            .order_by(col(Job.created_at).desc(), col(Job.id))
            .limit(limit)
            .offset(offset)
        )
        .scalars()
        .all()
    )
    return jobs, count


def _transition(connection: Connection, job_id: uuid.UUID, where: Any, **values: Any) -> Job | None:
    # Core, not the ORM: an ORM UPDATE … RETURNING also synchronizes the session's identity map,
    # which cost more than the statement's round trip on every step of every job.
    statement = (
        update(_JOBS).where(_JOBS.c.id == job_id, where).values(**values).returning(*_JOBS.c)
    )
    row = connection.execute(statement).one_or_none()
    return None if row is None else _job(row)


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
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"), _DUE_OR_ABANDONED)
    .values(
        status=JobStatus.RUNNING,
        worker=bindparam("claimant"),
        started_at=func.now(),
        lease_expires_at=func.now() + bindparam("lease", type_=Interval),
    )
    .returning(
        *_JOBS.c,
        select(func.max(_PRICES.c.date))
        .where(_PRICES.c.symbol == _JOBS.c.symbol)
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


def held_by(worker: Any) -> Any:
    """The condition that `worker` (a name or a bind parameter) still holds the job."""
    return (_JOBS.c.status == JobStatus.RUNNING) & (_JOBS.c.worker == worker)


# The claim's `started_at` is its token: the same process may claim the same job again later
# (after a requeue), and a heartbeat left over from the earlier claim must not renew the new one.
_RENEW = (
    update(_JOBS)
    .where(
        _JOBS.c.id == bindparam("job_id"),
        held_by(bindparam("holder")),
        _JOBS.c.started_at == bindparam("claimed_at"),
    )
    .values(
        # Never past the attempt's hard bound: a hung worker is presumed dead after
        # JOB_LEASE_SECONDS however faithfully its heartbeat thread keeps beating.
        lease_expires_at=func.least(
            func.now() + bindparam("window", type_=Interval),
            _JOBS.c.started_at + bindparam("hard_bound", type_=Interval),
        )
    )
    .returning(_JOBS.c.lease_expires_at)
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
        values["attempts"] = _JOBS.c.attempts - 1
    if outputsize is not None:
        values["outputsize"] = outputsize
    return _transition(session.connection(), job_id, held_by(worker), **values)


_SUCCEED = (
    update(_JOBS)
    .where(_JOBS.c.id == bindparam("job_id"), held_by(bindparam("holder")))
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
    .returning(*_JOBS.c)
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
    return None if row is None else _job(row)


def fail_job(
    session: Session, job_id: uuid.UUID, *, worker: str, code: str, message: str
) -> Job | None:
    """Mark the job failed with a contract error code and a redacted message."""
    return _transition(
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
        update(_JOBS).where(_JOBS.c.id == job_id).values(dispatched_at=utcnow())
    )
