"""Creating jobs (with dedupe), reading and listing them, what beat asks, deleting old ones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CTE, ColumnElement, Exists, Interval, Select, bindparam, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session

from shared.core.batches import deleted_batch
from shared.core.models import Job, JobStatus, OutputSize
from shared.domain.jobs.table import IN_FLIGHT, JOBS, job_from_row, job_or_none, status_in
from shared.domain.tallies import stored_jobs


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """The job for a request, and whether this request created it."""

    job: Job
    created: bool


# The partial unique index uq_jobs_symbol_in_flight decides races between concurrent requests.
_INSERT_QUEUED = (
    insert(JOBS)
    .values(
        id=bindparam("new_id"),
        symbol=bindparam("for_symbol"),
        outputsize=bindparam("size"),
        status=JobStatus.QUEUED,
        source=bindparam("origin"),
        attempts=0,
        created_at=func.clock_timestamp(),
    )
    .on_conflict_do_nothing(index_elements=[JOBS.c.symbol], index_where=IN_FLIGHT)
    .returning(*JOBS.c)
)
_IN_FLIGHT_FOR = select(JOBS).where(JOBS.c.symbol == bindparam("for_symbol"), IN_FLIGHT)


def create_job(
    session: Session,
    symbol: str,
    *,
    outputsize: OutputSize | None = None,
    source: str = "api",
) -> CreatedJob:
    """A new queued job for `symbol`, or the one already in flight; the caller commits."""
    # The loop covers the in-flight job finishing between our failed insert and the select.
    connection = session.connection()
    for _ in range(5):
        created = job_or_none(
            connection.execute(
                _INSERT_QUEUED,
                {
                    "new_id": uuid.uuid4(),
                    "for_symbol": symbol,
                    "size": outputsize,
                    "origin": source,
                },
            )
        )
        if created is not None:
            return CreatedJob(job=created, created=True)
        existing = job_or_none(connection.execute(_IN_FLIGHT_FOR, {"for_symbol": symbol}))
        if existing is not None:
            return CreatedJob(job=existing, created=False)
    raise RuntimeError(f"could not create or find an in-flight job for {symbol}")


_BY_ID = select(JOBS).where(JOBS.c.id == bindparam("job_id"))


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    """The job with this id, fresh from the database."""
    return job_or_none(session.connection().execute(_BY_ID, {"job_id": job_id}))


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
        conditions.append(status_in(status))
    if symbol is not None:
        conditions.append(JOBS.c.symbol == symbol)
    connection = session.connection()
    if symbol is None:
        # The trigger-kept tallies: a count(*) would read every job (millions after a year).
        count = stored_jobs(session, status)
    else:
        # A symbol's jobs are a short range of ix_jobs_symbol_created_at.
        count = connection.execute(
            select(func.count()).select_from(JOBS).where(*conditions)
        ).scalar_one()
    rows = connection.execute(
        select(JOBS)
        .where(*conditions)
        .order_by(JOBS.c.created_at.desc(), JOBS.c.id)
        .limit(limit)
        .offset(offset)
    )
    return [job_from_row(row) for row in rows], count


def in_flight_for(symbol: ColumnElement[str]) -> Exists:
    """Whether `symbol` (of the enclosing query) has a queued or running job: a probe of the
    partial index uq_jobs_symbol_in_flight."""
    return exists().where(JOBS.c.symbol == symbol, IN_FLIGHT)


def jobs_by_symbol_since(since: ColumnElement[Any], tries_since: ColumnElement[Any]) -> Select[Any]:
    """Each symbol with jobs created since `since`: its last job's time (`last_job_at`), and how
    many of its jobs were created since `tries_since` (`tries`). One range of ix_jobs_created_at,
    grouped, not two probes per symbol."""
    return (
        select(
            JOBS.c.symbol,
            func.max(JOBS.c.created_at).label("last_job_at"),
            func.count().filter(JOBS.c.created_at >= tries_since).label("tries"),
        )
        .where(JOBS.c.created_at >= since)
        .group_by(JOBS.c.symbol)
    )


def finished_jobs_deleted() -> CTE:
    """The CTE `gone`: deletes up to :batch jobs that finished more than :keep ago, returning
    their statuses as `key`. Oldest first (ix_jobs_created_at); jobs in flight never go."""
    keep = bindparam("keep", type_=Interval)
    return deleted_batch(
        JOBS,
        JOBS.c.created_at < func.now() - keep,
        status_in(JobStatus.SUCCEEDED, JobStatus.FAILED),
        JOBS.c.finished_at < func.now() - keep,
        oldest_first=JOBS.c.created_at,
        key=JOBS.c.status,
    )
