"""Retention runs by default: a real beat schedules it, a real worker deletes the old rows.

Beat and the worker get the retention settings empty, as docker-compose.yml passes them when
`.env` leaves them out, so the defaults (90 days each) decide; only the interval is shortened
from a minute to a second. `./run dev` starts the same beat (`celery -A worker.celery_app beat`).
"""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlmodel import Session

from tests.processes import celery_beat, celery_worker
from tests.support import insert_aged_call, insert_aged_job, wait_until

pytestmark = pytest.mark.e2e

DAY = 86400
ENV = {
    "JOB_RETENTION_DAYS": "",
    "API_CALL_RETENTION_DAYS": "",
    "RETENTION_INTERVAL_SECONDS": "1",
}


def stored_ids(session: Session) -> tuple[set[str], set[int]]:
    session.rollback()  # a fresh snapshot for each poll
    jobs = {str(i) for i in session.execute(text("SELECT id FROM jobs")).scalars()}
    calls = set(session.execute(text("SELECT id FROM api_calls")).scalars())
    return jobs, calls


def test_beat_runs_retention_with_the_default_windows(session: Session) -> None:
    session.execute(text("DELETE FROM tracked_symbols"))  # beat creates no refresh jobs here
    old_jobs = [
        insert_aged_job(session, "succeeded", created_days=92, finished_days=91),
        insert_aged_job(session, "failed", created_days=120, finished_days=119),
    ]
    kept_jobs = [
        insert_aged_job(session, "succeeded", created_days=95, finished_days=89),
        insert_aged_job(session, "queued", created_days=200, finished_days=None),
    ]
    # In flight for 200 days, held back for one more (not due, so the fleet leaves it queued).
    session.execute(
        text("UPDATE jobs SET not_before = now() + interval '1 day' WHERE id = :id"),
        {"id": kept_jobs[1]},
    )
    old_calls = [insert_aged_call(session, seconds_ago=91 * DAY)]
    kept_calls = [insert_aged_call(session, seconds_ago=89 * DAY)]
    session.commit()
    expected = (set(kept_jobs), set(kept_calls))
    assert stored_ids(session) == (set(old_jobs + kept_jobs), set(old_calls + kept_calls))

    with celery_worker(ENV, name="retention"), celery_beat(ENV) as beat:
        wait_until(lambda: stored_ids(session) == expected, timeout=60, what="retention")
        assert "Sending due task apply-retention" in beat.log()
    assert stored_ids(session) == expected
