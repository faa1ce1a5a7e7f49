"""Quota end to end: two worker instances and beat share one budget, as the sandbox sees it.

Thirty jobs against `2/second,10/20second` take three windows of budget (about 45 s of wall time):
the shortest run that shows the budget used in full, freed tokens used again promptly, and no
sliding window exceeded at the upstream. (A 20-second window behaves as a minute does, only
sooner; the limiter and the sandbox treat every window length alike.)
"""

from __future__ import annotations

import re

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from stockpile.sandbox.server import SandboxHandle
from tests.processes import celery_beat, celery_worker
from tests.support import max_in_sliding_interval, wait_until

pytestmark = pytest.mark.e2e

WINDOW = 20.0
LIMITS = f"2/second,10/{WINDOW:g}second"
ENV = {"ALPHAVANTAGE_RATE_LIMITS": LIMITS}
JOBS = 30
# A freed token may wait this long for its next call (dispatch, broker, claim, on a busy CI box).
REUSE_SLACK_SECONDS = 5.0
RECEIVED = re.compile(r"Task stockpile\.run_job\[[^\]]+\] received")


def test_max_in_sliding_interval_counts_the_worst_window() -> None:
    assert max_in_sliding_interval([0.0, 0.5, 0.99, 1.0, 2.5], 1.0) == 3  # (0.0, 1.0]
    assert max_in_sliding_interval([0.0, 1.0, 2.0], 1.0) == 1
    assert max_in_sliding_interval([], 1.0) == 0


def finished(session: Session) -> bool:
    session.rollback()  # a fresh snapshot for each poll
    statuses = session.execute(text("SELECT status FROM jobs")).scalars().all()
    return len(statuses) == JOBS and all(s in {"succeeded", "failed"} for s in statuses)


@pytest.mark.timeout(200)
def test_two_instances_and_beat_use_the_whole_budget_and_never_exceed_it(
    api: httpx.Client, auth: dict[str, str], sandbox: SandboxHandle, session: Session
) -> None:
    # The sandbox enforces the same limits: an overshoot would show as a throttle reply too.
    sandbox.configure(limits=LIMITS)
    # Only the posted jobs may spend the budget (beat would refresh the tracked defaults).
    session.execute(text("DELETE FROM tracked_symbols"))
    session.commit()
    with (
        celery_worker(ENV, name="a", concurrency=2) as worker_a,
        celery_worker(ENV, name="b", concurrency=2) as worker_b,
        celery_beat(ENV),
    ):
        for i in range(JOBS):
            response = api.post("/jobs", json={"symbol": f"Q{i:02d}"}, headers=auth)
            assert response.status_code == 202, response.text
        # Three windows of budget: 10 calls now, 10 when they leave the window, 10 after that.
        wait_until(lambda: finished(session), timeout=150, interval=1, what="all 30 jobs")
        logs = worker_a.log() + worker_b.log()

    calls = sorted(sandbox.stats().calls, key=lambda c: c.t)
    times = [c.t for c in calls]
    # One call per job, none refused.
    assert [c.outcome for c in calls] == ["ok"] * JOBS, [(c.t, c.symbol, c.outcome) for c in calls]
    assert max_in_sliding_interval(times, 1.0) <= 2
    assert max_in_sliding_interval(times, WINDOW) <= 10
    start = times[0]
    assert sum(1 for t in times if t < start + WINDOW) == 10  # the first window used all of it
    # Every later call used a token soon after it freed: nothing idled waiting for beat.
    late = [times[k] - times[k - 10] - WINDOW for k in range(10, JOBS)]
    assert max(late) < REUSE_SLACK_SECONDS, late
    jobs = session.execute(text("SELECT status, attempts FROM jobs")).all()
    assert sorted(set(jobs)) == [("succeeded", 1)]
    audit = session.execute(text("SELECT outcome, count(*) FROM api_calls GROUP BY 1")).all()
    assert [tuple(row) for row in audit] == [("ok", JOBS)]
    # Waits lived in PostgreSQL: each job went to a worker once when posted and at most a few
    # times more (when the budget freed), not once per retry tick.
    deliveries = len(RECEIVED.findall(logs))
    assert deliveries <= 3 * JOBS, deliveries
