"""Status conditions reach PostgreSQL as literals, so the partial indexes keep matching."""

from __future__ import annotations

from sqlalchemy import select

from shared.core.db import get_engine
from shared.core.models import JobStatus
from shared.domain.jobs.table import JOBS, held_by, status_in


def test_status_conditions_are_written_into_the_statement_not_bound() -> None:
    in_flight = status_in(JobStatus.QUEUED, JobStatus.RUNNING)
    statement = select(JOBS.c.id).where(in_flight, held_by("host:1") | status_in(JobStatus.FAILED))
    compiled = statement.compile(get_engine())  # the dialect and driver the workers use

    sql = str(compiled)
    assert "jobs.status IN ('queued', 'running')" in sql
    assert "jobs.status = 'running'" in sql
    assert "jobs.status = 'failed'" in sql
    assert list(compiled.params.values()) == ["host:1"]  # only the worker is a parameter
