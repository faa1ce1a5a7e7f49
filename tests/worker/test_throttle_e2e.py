"""Upstream throttle replies end to end: the whole fleet cools down, the job waits in PostgreSQL.

Two worker instances and beat run with the free tier's `1/second,25/day`. Without a fleet-wide
cooldown the limiter alone would let the next call out 1.1 s after a throttled one; AlphaVantage
asks for a pause, so nobody may call for 2 s (per-second throttle) or until the day's budget
frees (daily throttle).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.core.models import utcnow
from stockpile.sandbox.server import SandboxHandle
from tests.processes import celery_beat, celery_worker
from tests.support import wait_until

pytestmark = pytest.mark.e2e

ENV = {"ALPHAVANTAGE_RATE_LIMITS": "1/second,25/day"}
DAY = 86_400


@pytest.fixture(autouse=True)
def no_tracked_symbols(session: Session) -> None:
    # Only the posted jobs may call (beat would also refresh the tracked defaults).
    session.execute(text("DELETE FROM tracked_symbols"))
    session.commit()


@pytest.fixture(scope="module")
def fleet() -> Iterator[None]:
    with (
        celery_worker(ENV, name="throttle-a", concurrency=1),
        celery_worker(ENV, name="throttle-b", concurrency=1),
        celery_beat(ENV),
    ):
        yield


def post(api: httpx.Client, auth: dict[str, str], symbol: str) -> str:
    response = api.post("/jobs", json={"symbol": symbol}, headers=auth)
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["id"])


def job_row(session: Session, job_id: str) -> tuple[str, datetime | None, int]:
    session.rollback()  # a fresh snapshot for each poll
    row = session.execute(
        text("SELECT status, not_before, attempts FROM jobs WHERE id = :id"), {"id": job_id}
    ).one()
    return row.status, row.not_before, row.attempts


def parked(session: Session, job_id: str) -> datetime | None:
    """The job's not_before while it waits in the queue for a later time, else None."""
    status, not_before, _ = job_row(session, job_id)
    return not_before if status == "queued" and not_before and not_before > utcnow() else None


@pytest.mark.usefixtures("fleet")
def test_burst_reply_cools_the_fleet_down_and_the_job_later_succeeds(
    api: httpx.Client, auth: dict[str, str], sandbox: SandboxHandle, session: Session
) -> None:
    sandbox.script_faults(["burst_limit"], symbol="XBURST")
    throttled = post(api, auth, "XBURST")
    not_before = wait_until(
        lambda: parked(session, throttled), timeout=30, interval=0.02, what="the requeue"
    )
    others = [post(api, auth, symbol) for symbol in ("OA", "OB", "OC")]

    ids = [throttled, *others]
    wait_until(
        lambda: all(job_row(session, i)[0] == "succeeded" for i in ids),
        timeout=60,
        what="every job to succeed",
    )
    calls = sorted(sandbox.stats().calls, key=lambda c: c.t)
    burst = next(c.t for c in calls if c.outcome == "burst_limit")
    # Back in the queue, not failed, for about AlphaVantage's 2 s.
    assert 1.9 <= not_before.timestamp() - burst <= 3.0
    # Nobody called during the cooldown, though the other jobs were waiting for a token.
    after = [c.t for c in calls if c.t > burst]
    assert min(after) - burst >= 1.9
    assert [(c.symbol, c.outcome) for c in calls if c.symbol == "XBURST"] == [
        ("XBURST", "burst_limit"),
        ("XBURST", "ok"),
    ]
    assert job_row(session, throttled)[2] == 1  # the throttled try was given back
    audit = session.execute(
        text("SELECT outcome FROM api_calls WHERE symbol = 'XBURST' ORDER BY called_at")
    ).scalars()
    assert list(audit) == ["burst_limited", "ok"]


@pytest.mark.usefixtures("fleet")
def test_daily_reply_parks_every_job_until_the_day_window_frees(
    api: httpx.Client, auth: dict[str, str], sandbox: SandboxHandle, session: Session
) -> None:
    sandbox.script_faults(["daily_limit"], symbol="XDAY")
    throttled = post(api, auth, "XDAY")
    not_before = wait_until(
        lambda: parked(session, throttled), timeout=30, interval=0.05, what="the requeue"
    )
    assert DAY - 60 < (not_before - utcnow()).total_seconds() <= DAY + 1

    others = [post(api, auth, symbol) for symbol in ("DA", "DB", "DC")]
    # Each was tried by a worker, found the fleet cooling down, and went back to PostgreSQL.
    for job_id in others:
        waits_until = wait_until(
            functools.partial(parked, session, job_id), timeout=30, what="the other jobs"
        )
        assert (waits_until - utcnow()).total_seconds() > DAY - 60

    assert [(c.symbol, c.outcome) for c in sandbox.stats().calls] == [("XDAY", "daily_limit")]
    assert job_row(session, throttled)[0] == "queued"  # re-queued, not failed
    metrics = api.get("/metrics").text
    assert 'stockpile_alphavantage_calls{outcome="daily_quota_exceeded"} 1.0' in metrics
    cooldown = next(
        line for line in metrics.splitlines() if line.startswith("stockpile_alphavantage_cooldown")
    )
    assert float(cooldown.split()[-1]) > DAY - 60
