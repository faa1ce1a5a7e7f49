"""What the dispatcher asks of the jobs table, against real PostgreSQL."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import Engine, text
from sqlmodel import Session

from shared.domain.jobs.dispatching import take_due_jobs


def test_take_due_jobs_never_returns_more_than_its_budget_under_concurrent_updates(
    session: Session,
) -> None:
    # A due job updated by another transaction while the statement runs makes PostgreSQL
    # re-check it; a LIMIT inside `WHERE id IN (subquery)` can then be evaluated again and mark
    # more than `budget` jobs. Many due jobs make the window between snapshot and lock wide.
    session.execute(
        text(
            "INSERT INTO jobs (id, symbol, status, attempts, created_at, source) "
            "SELECT gen_random_uuid(), 'C' || i, 'queued', 0, now() - make_interval(secs => i), "
            "'api' FROM generate_series(1, 5000) AS i"
        )
    )
    session.commit()
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    stop = threading.Event()

    def churn() -> None:
        # Single-row commits on the jobs the dispatcher takes first (the oldest).
        with engine.connect() as conn:
            while not stop.is_set():
                conn.execute(
                    text(
                        "UPDATE jobs SET dispatched_at = NULL WHERE id = (SELECT id FROM jobs "
                        "WHERE status = 'queued' ORDER BY created_at OFFSET floor(random() * 6) "
                        "LIMIT 1)"
                    )
                )
                conn.commit()

    churners = [threading.Thread(target=churn) for _ in range(3)]
    for thread in churners:
        thread.start()
    taken: list[int] = []
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            with Session(engine) as dispatcher:
                taken.append(len(take_due_jobs(dispatcher, budget=3, resend_after=timedelta(0))))
                dispatcher.commit()
    finally:
        stop.set()
        for thread in churners:
            thread.join()

    assert len(taken) > 20
    assert max(taken) == 3
