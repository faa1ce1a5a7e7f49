"""The call audit against real PostgreSQL: the attempt and its pending call, in one statement."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import Engine, event, text

from shared.core.db import autocommit_connection
from shared.core.models import OutputSize
from shared.domain.audit import PENDING, start_call
from shared.domain.jobs.lifecycle import claim_job
from tests.reliability.harness import create_jobs

WORKER = "host:1"


def test_start_call_counts_the_attempt_and_audits_the_call_in_one_statement(
    engine: Engine,
) -> None:
    [job_id] = create_jobs(engine, ["AUDITED"])
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    with autocommit_connection() as connection:
        assert claim_job(connection, job_id, worker=WORKER, lease=timedelta(seconds=15))
        event.listen(connection, "before_cursor_execute", count)
        call_id = start_call(
            connection,
            job_id=job_id,
            worker=WORKER,
            called_at=1_700_000_000.5,
            outputsize=OutputSize.FULL,
        )
        event.remove(connection, "before_cursor_execute", count)

    assert len(statements) == 1
    with engine.connect() as conn:
        attempts = conn.execute(
            text("SELECT attempts FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
        call = conn.execute(
            text(
                "SELECT id, symbol, outputsize, outcome, job_id, extract(epoch FROM called_at)"
                " FROM api_calls"
            )
        ).one()
    assert attempts == 1
    assert tuple(call) == (call_id, "AUDITED", "full", PENDING, job_id, 1_700_000_000.5)


def test_start_call_for_a_job_the_worker_lost_writes_nothing(engine: Engine) -> None:
    [job_id] = create_jobs(engine, ["LOST"])
    with autocommit_connection() as connection:
        assert claim_job(connection, job_id, worker="other:2", lease=timedelta(seconds=15))
        call_id = start_call(
            connection, job_id=job_id, worker=WORKER, called_at=1.0, outputsize=OutputSize.COMPACT
        )

    assert call_id is None
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM api_calls")).scalar_one() == 0
        attempts = conn.execute(
            text("SELECT attempts FROM jobs WHERE id = :id"), {"id": job_id}
        ).scalar_one()
    assert attempts == 0
