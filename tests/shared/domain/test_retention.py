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
from shared.domain.retention import RetentionReport, apply_retention, call_retention
from shared.domain.tallies import JOBS, stored_jobs, tallies
from shared.upstream.ratelimit import RedisRateLimiter
from tests.support import insert_aged_call, insert_aged_job

WINDOW = timedelta(days=90)


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
        insert_aged_job(session, "succeeded", created_days=120, finished_days=91),
        insert_aged_job(session, "failed", created_days=95, finished_days=94),
        insert_aged_job(session, "succeeded", created_days=91, finished_days=90 + day / 24),
    ]
    kept = [
        # Finished within the window, though created long before it.
        insert_aged_job(session, "succeeded", created_days=100, finished_days=89),
        insert_aged_job(session, "failed", created_days=1, finished_days=1),
        # In flight, however old: never touched.
        insert_aged_job(session, "queued", created_days=400, finished_days=None),
        insert_aged_job(session, "running", created_days=300, finished_days=None),
    ]
    old_calls = [insert_aged_call(session, seconds_ago=(90 + d) * 86400) for d in (0.01, 1, 200)]
    old_calls.append(insert_aged_call(session, seconds_ago=91 * 86400, outcome="burst_limited"))
    new_calls = [insert_aged_call(session, seconds_ago=s) for s in (89 * 86400, 3600, 1)]
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
    # A deleted job's id answers exactly as an id that never existed (CONTRACT.md, Jobs).
    gone = api.get(f"/jobs/{past[0]}")
    assert gone.status_code == 404
    assert gone.json() == {"data": None, "info": {"error": f"No job with id {past[0]}."}}
    unknown_id = uuid.uuid4()
    unknown = api.get(f"/jobs/{unknown_id}")
    assert unknown.status_code == 404
    assert unknown.json()["info"]["error"] == f"No job with id {unknown_id}."
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
    needed = [insert_aged_call(session, seconds_ago=s) for s in (3500, 1800, 30)]
    gone = [insert_aged_call(session, seconds_ago=s) for s in (3 * 3600, 2 * 86400)]
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


def tallies_match_rows() -> bool:
    """Whether, in one snapshot, the tallied jobs by status are the rows by status."""
    with get_engine().connect() as conn:
        snapshot = conn.execution_options(isolation_level="REPEATABLE READ")
        with snapshot.begin(), Session(bind=snapshot) as own:
            counted = dict(own.execute(text("SELECT status, count(*) FROM jobs GROUP BY 1")).all())
            kept = {k: v for k, v in tallies(own, JOBS)[JOBS].items() if v}
    return bool(kept == counted)


def test_the_listing_count_stays_exact_under_concurrent_creates_and_deletes(
    session: Session, api: httpx.Client
) -> None:
    # Finished jobs past the window for the deleter to take from the start; the creators add
    # more while it runs, so rows are inserted, moved and deleted at the same time.
    initial_old = 60
    for _ in range(initial_old):
        insert_aged_job(session, "succeeded", created_days=200, finished_days=199)
    session.commit()
    errors: list[BaseException] = []
    first_deletion = threading.Event()
    deleted: list[int] = []

    def creator(worker: int) -> None:
        try:
            for i in range(40):
                if i == 20 and not first_deletion.wait(timeout=60):
                    raise TimeoutError("the deleter deleted nothing")
                with session_scope() as own:
                    job = create_job(own, f"C{worker}X{i:03d}").job
                if i % 3 == 0:
                    with session_scope() as own:
                        own.execute(
                            text("UPDATE jobs SET status = 'failed' WHERE id = :id"),
                            {"id": job.id},
                        )
                if i % 4 == 0:
                    with session_scope() as own:
                        insert_aged_job(own, "failed", created_days=300, finished_days=299)
        except BaseException as exc:
            errors.append(exc)

    creators = [threading.Thread(target=creator, args=(n,)) for n in range(3)]

    def deleter() -> None:
        try:
            while any(thread.is_alive() for thread in creators):
                deleted.append(apply_retention(job_keep=WINDOW, call_keep=WINDOW, batch=3).jobs)
                if deleted[-1]:
                    first_deletion.set()
        except BaseException as exc:
            errors.append(exc)

    for thread in creators:
        thread.start()
    deleting = threading.Thread(target=deleter)
    deleting.start()
    # Meanwhile, every snapshot's tallies equal its rows.
    snapshots = 0
    while any(thread.is_alive() for thread in creators):
        assert tallies_match_rows()
        snapshots += 1
    for thread in [*creators, deleting]:
        thread.join(timeout=120)
    assert not errors, errors
    assert snapshots > 0
    # The creators' last old rows may have come after the deleter's last run.
    deleted.append(apply_retention(job_keep=WINDOW, call_keep=WINDOW, batch=3).jobs)
    assert sum(deleted) == initial_old + 3 * len(range(0, 40, 4))
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


def test_retention_skips_a_row_another_transaction_holds_instead_of_waiting(
    session: Session,
) -> None:
    held = insert_aged_job(session, "succeeded", created_days=200, finished_days=199)
    insert_aged_job(session, "failed", created_days=200, finished_days=199)
    session.commit()
    reports: list[RetentionReport] = []
    with get_engine().connect() as holder:
        # What a worker or a request holding the row would do; retention must not wait for it.
        holder.execute(text("SELECT 1 FROM jobs WHERE id = :id FOR UPDATE"), {"id": held})
        run = threading.Thread(
            target=lambda: reports.append(apply_retention(job_keep=WINDOW, call_keep=WINDOW))
        )
        run.start()
        run.join(timeout=30)
        finished_while_held = bool(reports)
        holder.rollback()
    run.join(timeout=30)
    assert finished_while_held, "retention waited for a row another transaction holds"
    assert reports[0].jobs == 1
    session.rollback()
    assert [str(i) for i in session.execute(text("SELECT id FROM jobs")).scalars()] == [held]
    # Released, the row goes at the next run.
    assert apply_retention(job_keep=WINDOW, call_keep=WINDOW).jobs == 1


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
