"""The `jobs` table as Core sees it: the table, its status conditions, rows as `Job`s.

Every statement that reads or writes `jobs` is a Core expression on `JOBS`, written in this
package; those of the hot paths are built once at import (building one cost as much CPU as
executing it), only the listing composes its filters per call.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, CursorResult, Row, and_, func, literal_column

from shared.core.models import (
    FinancialData,
    Job,
    JobStatus,
)

JOBS = Job.metadata.tables["jobs"]
PRICES = FinancialData.metadata.tables["financial_data"]


def status_in(*statuses: JobStatus) -> ColumnElement[bool]:
    """`status = 'queued'` (or `IN (…)`), the values written into the SQL as literals.

    The partial indexes (`uq_jobs_symbol_in_flight`, `ix_jobs_due`,
    `ix_jobs_queued_dispatched_at`) serve a query only when the planner can prove from the
    statement that its condition implies the index's `WHERE status …`. psycopg2 inlines bound
    values before they reach the server, so a bound status works today; but a prepared
    statement's generic plan (psycopg 3, asyncpg, PgBouncer's prepared statements) plans
    `status = $1` without the value, and no partial index matches: EXPLAIN of a generic plan
    turned the count of sent jobs from an index-only scan of `ix_jobs_queued_dispatched_at` into
    a parallel scan of the whole table. The enum's values are fixed words, nothing to escape.
    """
    values = [literal_column(f"'{status.value}'", JOBS.c.status.type) for status in statuses]
    return JOBS.c.status == values[0] if len(values) == 1 else JOBS.c.status.in_(values)


IS_QUEUED = status_in(JobStatus.QUEUED)
IS_RUNNING = status_in(JobStatus.RUNNING)
IN_FLIGHT = status_in(JobStatus.QUEUED, JobStatus.RUNNING)
# A queued job may run: it has no `not_before`, or that time has come (PostgreSQL's clock).
NOT_HELD_BACK = JOBS.c.not_before.is_(None) | (JOBS.c.not_before <= func.now())


def held_by(worker: Any) -> ColumnElement[bool]:
    """The condition that `worker` (a name or a bind parameter) still holds the job."""
    return and_(IS_RUNNING, JOBS.c.worker == worker)


def job_from_row(row: Row[Any]) -> Job:
    return Job(**row._mapping)


def job_or_none(result: CursorResult[Any]) -> Job | None:
    """The one job a statement returned, or None when its conditions matched no row."""
    row = result.one_or_none()
    return None if row is None else job_from_row(row)
