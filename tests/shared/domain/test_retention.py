"""Retention against real PostgreSQL and Redis: exactly the rows past the window go, totals stay."""

from __future__ import annotations

import re
import threading
import uuid
from datetime import timedelta

import httpx
import redis
from sqlalchemy import text
from sqlmodel import Session

from shared.core.db import get_engine, session_scope
from shared.core.rate_windows import parse_rate_limits
from shared.core.settings import Settings
from shared.domain.audit import recent_call_times
from shared.domain.jobs.lifecycle import claim_job, renew_lease
from shared.domain.jobs.records import create_job
from shared.domain.retention import apply_retention, call_retention
from shared.domain.tallies import JOBS, stored_jobs, tallies
from shared.upstream.ratelimit import RedisRateLimiter

WINDOW = timedelta(days=90)


def add_job(
    session: Session, status: str, *, created_days: float, finished_days: float | None
) -> str:
    """A job row created (and finished) that many days ago by PostgreSQL's clock; its id."""
    job_id = str(uuid.uuid4())
    session.execute(
        text(
            "INSERT INTO jobs (id, symbol, status, source, attempts, created_at, finished_at)"
            " VALUES (:id, :symbol, :status, 'api', 1, now() - make_interval(secs => :created),"
            " now() - make_interval(secs => :finished))"
        ),
        {
            "id": job_id,
            "symbol": f"R{job_id[:6]}".upper(),
            "status": status,
            "created": created_days * 86400,
            "finished": None if finished_days is None else finished_days * 86400,
        },
    )
    return job_id


def add_call(session: Session, *, seconds_ago: float, outcome: str = "ok") -> int:
    """An audited call made that long ago by PostgreSQL's clock; its id."""
    call_id: int = session.execute(
        text(
            "INSERT INTO api_calls (called_at, symbol, outputsize, outcome)"
            " VALUES (now() - make_interval(secs => :ago), 'IBM', 'compact', :outcome)"
            " RETURNING id"
        ),
        {"ago": seconds_ago, "outcome": outcome},
    ).scalar_one()
    return call_id


def metric_lines(api: httpx.Client, *names: str) -> dict[str, float]:
    """The samples of these metrics in the API's /metrics, by name and labels."""
    body = api.get("/metrics").text
    pattern = re.compile(rf"^((?:{'|'.join(names)})\{{[^}}]*\}}) (\S+)$", re.MULTILINE)
    return {sample: float(value) for sample, value in pattern.findall(body)}


def test_retention_deletes_exactly_the_rows_past_the_window_and_keeps_totals(
    session: Session, api: httpx.Client
) -> None:
    day = 1.0
    past = [
        add_job(session, "succeeded", created_days=120, finished_days=91),
        add_job(session, "failed", created_days=95, finished_days=94),
        add_job(session, "succeeded", created_days=91, finished_days=90 + day / 24),
    ]
    kept = [
        # Finished within the window, though created long before it.
        add_job(session, "succeeded", created_days=100, finished_days=89),
        add_job(session, "failed", created_days=1, finished_days=1),
        # In flight, however old: never touched.
        add_job(session, "queued", created_days=400, finished_days=None),
        add_job(session, "running", created_days=300, finished_days=None),
    ]
    old_calls = [add_call(session, seconds_ago=(90 + d) * 86400) for d in (0.01, 1, 200)]
    old_calls.append(add_call(session, seconds_ago=91 * 86400, outcome="burst_limited"))
    new_calls = [add_call(session, seconds_ago=s) for s in (89 * 86400, 3600, 1)]
    session.commit()
    totals = ("stockpile_jobs", "stockpile_alphavantage_calls")
    before = metric_lines(api, *totals)
    assert before['stockpile_jobs{status="succeeded"}'] == 3

    # Batches of two: the run loops over several short transactions.
    report = apply_retention(job_keep=WINDOW, call_keep=WINDOW, batch=2)

    assert (report.jobs, report.api_calls, report.finished) == (3, 4, True)
    session.rollback()
    remaining = {str(i) for i in session.execute(text("SELECT id FROM jobs")).scalars()}
    assert remaining == set(kept)
    calls = set(session.execute(text("SELECT id FROM api_calls")).scalars())
    assert calls == set(new_calls)
    # Totals count what retention deleted: none of them went down.
    assert metric_lines(api, *totals) == before
    deleted = metric_lines(api, "stockpile_retention_deleted_rows_total")
    assert deleted == {
        'stockpile_retention_deleted_rows_total{table="jobs"}': 3,
        'stockpile_retention_deleted_rows_total{table="api_calls"}': 4,
    }
    # The listing's count follows the rows.
    assert api.get("/jobs").json()["pagination"]["count"] == len(kept)
    assert api.get(f"/jobs/{past[0]}").status_code == 404
    assert api.get(f"/jobs/{kept[0]}").status_code == 200
    # A second run finds nothing more.
    again = apply_retention(job_keep=WINDOW, call_keep=WINDOW, batch=2)
    assert (again.jobs, again.api_calls) == (0, 0)


def test_calls_the_limiter_still_needs_survive_and_a_reseeded_limiter_stays_within_limits(
    session: Session, redis_client: redis.Redis[bytes]
) -> None:
    limits = "3/hour,2/minute"
    # Asked to keep calls a few minutes only: the hour window needs them longer.
    settings = Settings(alphavantage_rate_limits=limits, api_call_retention_days=0.002)
    keep = call_retention(settings)
    assert keep >= timedelta(hours=1)
    needed = [add_call(session, seconds_ago=s) for s in (3500, 1800, 30)]
    gone = [add_call(session, seconds_ago=s) for s in (3 * 3600, 2 * 86400)]
    session.commit()

    report = apply_retention(job_keep=WINDOW, call_keep=keep)

    assert report.api_calls == len(gone)
    session.rollback()
    assert set(session.execute(text("SELECT id FROM api_calls")).scalars()) == set(needed)
    # Redis lost everything (a fresh key prefix): the limiter re-seeds from the audit.
    windows = parse_rate_limits(limits)
    longest = timedelta(seconds=max(w.seconds for w in windows))

    def history() -> list[float]:
        with session_scope() as history_session:
            return recent_call_times(history_session, within=longest)

    prefix = f"test:retention:{uuid.uuid4().hex}"
    limiter = RedisRateLimiter(redis_client, windows, history=history, key_prefix=prefix)
    try:
        assert limiter.ensure_initialized()
        status = limiter.status()
        # The hour already holds its 3 calls: nothing more may go out.
        assert [w.used for w in status.windows] == [3, 1]
        assert not limiter.acquire().granted
    finally:
        for key in redis_client.scan_iter(match=f"{prefix}:*"):
            redis_client.delete(key)


def test_the_listing_count_stays_exact_under_concurrent_creates_and_deletes(
    session: Session, api: httpx.Client
) -> None:
    # Finished jobs past the window for the deleter to take while others create and finish jobs.
    for _ in range(60):
        add_job(session, "succeeded", created_days=200, finished_days=199)
    session.commit()
    errors: list[BaseException] = []

    def creator(worker: int) -> None:
        try:
            for i in range(40):
                with session_scope() as own:
                    job = create_job(own, f"C{worker}X{i:03d}").job
                if i % 3 == 0:
                    with session_scope() as own:
                        own.execute(
                            text("UPDATE jobs SET status = 'failed' WHERE id = :id"),
                            {"id": job.id},
                        )
        except BaseException as exc:
            errors.append(exc)

    def deleter() -> None:
        try:
            while apply_retention(job_keep=WINDOW, call_keep=WINDOW, batch=3).jobs:
                pass
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=creator, args=(n,)) for n in range(3)]
    threads.append(threading.Thread(target=deleter))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    session.rollback()
    rows = session.execute(text("SELECT status, count(*) FROM jobs GROUP BY status")).all()
    actual = dict(rows)
    failed = 3 * len(range(0, 40, 3))
    assert actual == {"queued": 120 - failed, "failed": failed}
    assert {k: v for k, v in tallies(session, JOBS)[JOBS].items() if v} == actual
    assert stored_jobs(session, None) == 120
    assert api.get("/jobs").json()["pagination"]["count"] == 120
    assert api.get("/jobs", params={"status": "failed"}).json()["pagination"]["count"] == failed
    assert api.get("/jobs", params={"status": "succeeded"}).json()["pagination"]["count"] == 0


def test_lease_renewals_fire_no_tally(session: Session) -> None:
    job = create_job(session, "LEASE").job
    session.commit()
    with get_engine().connect() as conn:
        claim = claim_job(conn, job.id, worker="w:1", lease=timedelta(seconds=15))
        conn.commit()
    assert claim is not None
    claimed_at = claim.job.started_at
    assert claimed_at is not None
    rows_before = session.execute(text("SELECT count(*) FROM row_tallies")).scalar_one()
    for _ in range(3):
        with get_engine().connect() as conn:
            renewed = renew_lease(
                conn,
                job.id,
                worker="w:1",
                claimed_at=claimed_at,
                window=timedelta(seconds=15),
                hard_bound=timedelta(seconds=300),
            )
            conn.commit()
        assert renewed is not None
    session.rollback()
    assert session.execute(text("SELECT count(*) FROM row_tallies")).scalar_one() == rows_before
    assert stored_jobs(session, "running") == 1
    assert stored_jobs(session, "queued") == 0
