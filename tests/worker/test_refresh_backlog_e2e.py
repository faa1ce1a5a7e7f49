"""A refresh backlog under a per-window limit: every window is full while it lasts, none overfull.

Ninety tracked symbols lag the market; beat's refresh check creates their jobs at once, and two
worker instances spend them under `30/15second` (a 15-second window behaves as a minute does,
only sooner; the benchmark `bench.scale` measures the real `300/minute`). The sandbox enforces
the same limit and logs each call's arrival: each consecutive window from the first call must
hold at least 95 % of the limit until the backlog is spent, and no sliding window more than it.
"""

from __future__ import annotations

import math
from datetime import date

import pytest
from sqlalchemy import text
from sqlmodel import Session

from stockpile.sandbox.server import SandboxHandle
from tests.processes import celery_beat, celery_worker
from tests.support import max_in_sliding_interval, wait_until

pytestmark = pytest.mark.e2e

WINDOW = 15.0
LIMIT = 30
LIMITS = f"{LIMIT}/{WINDOW:g}second"
WINDOWS = 3
SYMBOLS = LIMIT * WINDOWS
SANDBOX_TODAY = date(2000, 6, 1)
ENV = {"ALPHAVANTAGE_RATE_LIMITS": LIMITS, "REFRESH_CHECK_INTERVAL_SECONDS": "1"}


def backlog_spent(session: Session) -> bool:
    session.rollback()  # a fresh snapshot for each poll
    finished = session.execute(
        text("SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')")
    ).scalar_one()
    return bool(finished == SYMBOLS)


@pytest.mark.timeout(200)
def test_a_refresh_backlog_fills_every_window_and_never_exceeds_it(
    sandbox: SandboxHandle, session: Session
) -> None:
    # The sandbox builds a new symbol's history up to its "today" (~70 ms for the real one): a
    # burst of 30 new symbols would queue at the sandbox and arrive later than they were granted.
    # Seven months of history still fill a compact answer.
    sandbox.configure(limits=LIMITS, today=SANDBOX_TODAY.isoformat())
    session.execute(text("DELETE FROM tracked_symbols"))
    session.execute(
        text(
            "INSERT INTO tracked_symbols (symbol)"
            " SELECT 'F' || lpad(n::text, 3, '0') FROM generate_series(1, :count) n"
        ),
        {"count": SYMBOLS},
    )
    session.commit()
    with (
        celery_worker(ENV, name="fill-a", concurrency=2),
        celery_worker(ENV, name="fill-b", concurrency=2),
        celery_beat(ENV),
    ):
        wait_until(lambda: backlog_spent(session), timeout=150, interval=1, what="the backlog")

    calls = sorted(sandbox.stats().calls, key=lambda c: c.t)
    times = [c.t for c in calls]
    assert [c.outcome for c in calls] == ["ok"] * SYMBOLS
    assert max_in_sliding_interval(times, WINDOW) <= LIMIT
    start = times[0]
    per_window = [
        sum(1 for t in times if start + WINDOW * w <= t < start + WINDOW * (w + 1))
        for w in range(WINDOWS)
    ]
    # The backlog lasts exactly WINDOWS windows at a full budget: each must be (nearly) full.
    assert min(per_window) >= math.ceil(0.95 * LIMIT), per_window
    jobs = session.execute(text("SELECT source, status FROM jobs GROUP BY 1, 2")).all()
    assert [tuple(row) for row in jobs] == [("beat", "succeeded")]
