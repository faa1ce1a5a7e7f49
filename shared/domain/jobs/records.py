"""Creating jobs (with dedupe), reading one, and listing them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col

from shared.core.models import (
    IN_FLIGHT_STATUSES,
    Job,
    JobStatus,
    OutputSize,
)
from shared.domain.jobs.table import JOBS, job_from_row
from shared.domain.tallies import stored_jobs


@dataclass(frozen=True, slots=True)
class CreatedJob:
    """The job for a request, and whether this request created it."""

    job: Job
    created: bool


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
            insert(JOBS)
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
                index_elements=[JOBS.c.symbol],
                index_where=text("status IN ('queued', 'running')"),
            )
            .returning(*JOBS.c)
        ).one_or_none()
        if created is not None:
            return CreatedJob(job=job_from_row(created), created=True)
        existing = connection.execute(
            select(JOBS).where(JOBS.c.symbol == symbol, JOBS.c.status.in_(IN_FLIGHT_STATUSES))
        ).one_or_none()
        if existing is not None:
            return CreatedJob(job=job_from_row(existing), created=False)
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
