"""The `jobs` table as Core sees it: the table, rows as `Job`s, the conditional transition."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, Row, update

from shared.core.models import (
    FinancialData,
    Job,
    JobStatus,
)

JOBS = Job.metadata.tables["jobs"]
PRICES = FinancialData.metadata.tables["financial_data"]


def job_from_row(row: Row[Any]) -> Job:
    return Job(**row._mapping)


def transition(connection: Connection, job_id: uuid.UUID, where: Any, **values: Any) -> Job | None:
    # Core, not the ORM: an ORM UPDATE … RETURNING also synchronizes the session's identity map,
    # which cost more than the statement's round trip on every step of every job.
    statement = update(JOBS).where(JOBS.c.id == job_id, where).values(**values).returning(*JOBS.c)
    row = connection.execute(statement).one_or_none()
    return None if row is None else job_from_row(row)


def held_by(worker: Any) -> Any:
    """The condition that `worker` (a name or a bind parameter) still holds the job."""
    return (JOBS.c.status == JobStatus.RUNNING) & (JOBS.c.worker == worker)


# The claim's `started_at` is its token: the same process may claim the same job again later
# (after a requeue), and a heartbeat left over from the earlier claim must not renew the new one.
