"""The job runner spends no call it need not: throttle replies, full-history choices, fallbacks.

Each test runs `run_job` in this process against the sandbox AlphaVantage, with a real Redis
limiter (the fleet's key prefix, so the API's /metrics sees its cooldown) and real PostgreSQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx
import pytest
import redis
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import Session

from shared.core.db import autocommit_connection, get_engine
from shared.core.market_calendar import last_completed_trading_day, trading_days
from shared.core.models import Job, JobErrorCode, OutputSize, utcnow
from shared.core.rate_windows import parse_rate_limits
from shared.domain.audit import start_call
from shared.domain.heartbeat import LeaseTerms
from shared.domain.jobs.lifecycle import claim_job
from shared.domain.jobs.records import create_job, get_job
from shared.domain.prices import upsert_prices
from shared.domain.refresh import Outcome, RunPolicy, RunResult, run_job
from shared.upstream.client import AlphaVantageClient
from shared.upstream.factory import (
    LIMITER_KEY_PREFIX,
    LIMITER_MARGIN_SECONDS,
    FullHistoryMemory,
    Upstream,
)
from shared.upstream.ratelimit import RedisRateLimiter
from stockpile.localstack import free_port, start_redis
from stockpile.sandbox.server import SandboxHandle
from tests.support import FAKE_API_KEY, bar, wait_for_redis_time, wait_until

DAY = 86_400


def make_upstream(
    sandbox: SandboxHandle, client: redis.Redis[bytes], limits: str
) -> Iterator[Upstream]:
    upstream = Upstream(
        client=AlphaVantageClient(
            base_url=sandbox.base_url, api_key=SecretStr(FAKE_API_KEY), timeout=30
        ),
        limiter=RedisRateLimiter(
            client,
            parse_rate_limits(limits),
            history=lambda: (),
            key_prefix=LIMITER_KEY_PREFIX,
            margin_seconds=LIMITER_MARGIN_SECONDS,
        ),
        full_history=FullHistoryMemory(client),
    )
    yield upstream
    upstream.close()


@pytest.fixture
def free_tier(sandbox: SandboxHandle, redis_client: redis.Redis[bytes]) -> Iterator[Upstream]:
    yield from make_upstream(sandbox, redis_client, "1/second,25/day")


@pytest.fixture
def per_second(sandbox: SandboxHandle, redis_client: redis.Redis[bytes]) -> Iterator[Upstream]:
    yield from make_upstream(sandbox, redis_client, "1/second")


@pytest.fixture
def generous(sandbox: SandboxHandle, redis_client: redis.Redis[bytes]) -> Iterator[Upstream]:
    yield from make_upstream(sandbox, redis_client, "50/second")


def run(job: Job, upstream: Upstream, *, full_history: bool = False) -> RunResult:
    terms = LeaseTerms(window=timedelta(seconds=15), hard_bound=timedelta(seconds=60))
    policy = RunPolicy(max_attempts=3, lease=terms, full_history=full_history)
    return run_job(job.id, upstream=upstream, policy=policy, worker="test")


def new_job(session: Session, symbol: str) -> Job:
    job = create_job(session, symbol).job
    session.commit()
    return job


def calls(sandbox: SandboxHandle, symbol: str) -> list[tuple[str | None, str]]:
    """(outputsize, outcome) of every call the sandbox received about `symbol`."""
    return [(c.outputsize, c.outcome) for c in sandbox.stats().calls if c.symbol == symbol]


def metric(api: httpx.Client, name: str, labels: str = "") -> float:
    body = api.get("/metrics").text
    line = next(line for line in body.splitlines() if line.startswith(f"{name}{labels} "))
    return float(line.split()[-1])


def seconds_until(job: Job) -> float:
    assert job.not_before is not None
    return (job.not_before - utcnow()).total_seconds()


def test_burst_reply_requeues_the_job_and_cools_the_whole_fleet_down(
    session: Session, sandbox: SandboxHandle, generous: Upstream, api: httpx.Client
) -> None:
    sandbox.script_faults(["burst_limit"], symbol="XBURST")
    throttled = new_job(session, "XBURST")
    other = new_job(session, "YOTHER")

    result = run(throttled, generous)

    assert result.outcome is Outcome.REQUEUED
    assert result.retry_in == 2.0  # AlphaVantage's burst limit is per second: seconds, not hours
    job = get_job(session, throttled.id)
    assert job is not None
    assert job.status == "queued"
    assert 0 < seconds_until(job) <= 2.0
    assert job.attempts == 0  # a throttled call is not the job's fault
    assert job.detail is not None
    assert "throttled" in job.detail
    status = generous.limiter.status()
    assert 0 < status.cooldown_remaining <= 2.0
    assert status.cooldown_reason is not None
    # Visible to operators: the cooldown, and the call's outcome in the audit log.
    assert metric(api, "stockpile_alphavantage_cooldown_seconds") > 1.0
    assert metric(api, "stockpile_alphavantage_calls", '{outcome="burst_limited"}') == 1

    # Another worker's job during the cooldown makes no call and waits out the cooldown.
    other_result = run(other, generous)
    assert other_result.outcome is Outcome.REQUEUED
    assert other_result.retry_in is not None
    assert other_result.retry_in <= 2.0
    assert calls(sandbox, "YOTHER") == []
    assert run(throttled, generous).outcome is Outcome.NOT_CLAIMED  # not due before its not_before

    time.sleep(seconds_until(job) + 0.05)
    assert run(throttled, generous).outcome is Outcome.SUCCEEDED
    assert calls(sandbox, "XBURST") == [("compact", "burst_limit"), ("compact", "ok")]
    burst, ok = (c.t for c in sandbox.stats().calls if c.symbol == "XBURST")
    assert ok - burst >= 2.0
    audit = session.execute(
        text("SELECT outcome FROM api_calls WHERE symbol = 'XBURST' ORDER BY called_at")
    ).scalars()
    assert list(audit) == ["burst_limited", "ok"]


def test_daily_reply_stops_the_fleet_until_the_day_window_frees(
    session: Session, sandbox: SandboxHandle, free_tier: Upstream, api: httpx.Client
) -> None:
    sandbox.script_faults(["daily_limit"], symbol="XDAY")
    throttled = new_job(session, "XDAY")
    other = new_job(session, "YDAY")

    assert run(throttled, free_tier).outcome is Outcome.REQUEUED

    job = get_job(session, throttled.id)
    assert job is not None
    assert job.status == "queued"
    assert job.attempts == 0
    # Its own call is the oldest in the day window: the budget frees a day after it.
    assert DAY - 60 < seconds_until(job) <= DAY + 1
    status = free_tier.limiter.status()
    day = next(w for w in status.windows if w.window.seconds == DAY)
    assert day.remaining == 0
    assert DAY - 60 < status.cooldown_remaining <= DAY + 1
    assert metric(api, "stockpile_alphavantage_cooldown_seconds") > DAY - 60
    assert metric(api, "stockpile_alphavantage_calls", '{outcome="daily_quota_exceeded"}') == 1

    assert run(other, free_tier).outcome is Outcome.REQUEUED
    assert calls(sandbox, "YDAY") == []
    waiting = get_job(session, other.id)
    assert waiting is not None
    assert waiting.status == "queued"
    assert seconds_until(waiting) > DAY - 60


def test_full_history_premium_reply_falls_back_and_is_remembered_fleet_wide(
    session: Session, sandbox: SandboxHandle, generous: Upstream
) -> None:
    first = new_job(session, "FULLA")
    second = new_job(session, "FULLB")

    assert run(first, generous, full_history=True).outcome is Outcome.SUCCEEDED
    assert calls(sandbox, "FULLA") == [("full", "premium_outputsize"), ("compact", "ok")]
    assert generous.full_history.unavailable()

    # The next job wanting the full history goes straight to compact: no second `full` call.
    assert run(second, generous, full_history=True).outcome is Outcome.SUCCEEDED
    assert calls(sandbox, "FULLB") == [("compact", "ok")]
    assert [c.outputsize for c in sandbox.stats().calls].count("full") == 1


def test_full_history_not_configured_asks_for_compact(
    session: Session, sandbox: SandboxHandle, generous: Upstream
) -> None:
    sandbox.configure(premium=True)
    job = new_job(session, "NOFULL")
    assert run(job, generous, full_history=False).outcome is Outcome.SUCCEEDED
    assert calls(sandbox, "NOFULL") == [("compact", "ok")]


@pytest.mark.parametrize(
    ("missing_days", "expected"),
    [(None, "full"), (101, "full"), (100, "compact"), (1, "compact")],
)
def test_full_history_asked_only_for_a_gap_over_100_trading_days(
    session: Session,
    sandbox: SandboxHandle,
    generous: Upstream,
    missing_days: int | None,
    expected: str,
) -> None:
    sandbox.configure(premium=True)
    if missing_days is not None:
        target = last_completed_trading_day(utcnow())
        days = trading_days(target - timedelta(days=400), target)
        # Stored through the trading day that leaves exactly `missing_days` trading days to fetch.
        stored_through = days[-missing_days - 1]
        upsert_prices(session, "GAP", [bar(stored_through.isoformat(), "10", "11")])
    job = new_job(session, "GAP")

    assert run(job, generous, full_history=True).outcome is Outcome.SUCCEEDED
    assert calls(sandbox, "GAP") == [(expected, "ok")]


def test_a_worker_stalled_past_its_window_makes_no_call_with_the_lapsed_token(
    session: Session, sandbox: SandboxHandle, redis_client: redis.Redis[bytes], per_second: Upstream
) -> None:
    upstream = per_second
    job = new_job(session, "XSTALL")
    # Another transaction blocks inserts into the audit log: the worker stalls between the grant
    # and the send (in the statement that counts the attempt), as on a saturated machine.
    with get_engine().connect() as blocker:
        blocker.execute(text("LOCK TABLE api_calls IN SHARE MODE"))
        with ThreadPoolExecutor(max_workers=1) as pool:
            running = pool.submit(run, job, upstream)
            wait_until(lambda: upstream.limiter.status().windows[0].used, timeout=30, what="grant")
            granted_at = upstream.limiter.status().at
            wait_for_redis_time(redis_client, granted_at + 1 + LIMITER_MARGIN_SECONDS)
            assert upstream.limiter.acquire().granted  # another call takes the freed place
            blocker.rollback()
            result = running.result(timeout=30)

    assert result.outcome is Outcome.REQUEUED
    assert calls(sandbox, "XSTALL") == []
    stalled = get_job(session, job.id)
    assert stalled is not None
    assert (stalled.status, stalled.attempts) == ("queued", 0)
    assert stalled.detail is not None
    assert "lapsed" in stalled.detail
    audit = session.execute(text("SELECT count(*) FROM api_calls WHERE symbol = 'XSTALL'"))
    assert audit.scalar_one() == 0  # no call was made, so none is audited


def test_attempts_cut_short_by_deaths_count_and_the_cap_ends_the_job_without_a_call(
    session: Session, sandbox: SandboxHandle, generous: Upstream
) -> None:
    job = new_job(session, "XDIES")
    for death in range(3):  # `run`'s max_attempts: each worker dies in its call
        worker = f"doomed:{death}"
        with autocommit_connection() as connection:
            claim = claim_job(connection, job.id, worker=worker, lease=timedelta(seconds=15))
            assert claim is not None
            assert claim.job.attempts == death
            # The attempt and its call's audit row, as right before the request is sent.
            call = start_call(
                connection,
                job_id=job.id,
                worker=worker,
                called_at=time.time(),
                outputsize=OutputSize.COMPACT,
            )
            assert call is not None
            # Then the process dies: no renewal, and its lease lapses.
            connection.execute(
                text("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE id = :id"),
                {"id": job.id},
            )

    result = run(job, generous)

    assert result.outcome is Outcome.FAILED
    assert result.job is not None
    assert (result.job.attempts, result.job.error_code) == (3, JobErrorCode.UPSTREAM_ERROR)
    assert result.job.error_message == "Gave up after 3 attempts that never finished."
    assert calls(sandbox, "XDIES") == []  # the capped job spends no more of the budget
    audit = session.execute(
        text("SELECT outcome, count(*) FROM api_calls WHERE job_id = :id GROUP BY outcome"),
        {"id": job.id},
    ).all()
    assert [tuple(row) for row in audit] == [("pending", 3)]  # the dead calls still count


def assert_requeued_for_the_limiter_without_a_call(
    session: Session, sandbox: SandboxHandle, job: Job
) -> None:
    """Back in the queue, due at once, no attempt counted, no call made or audited."""
    assert calls(sandbox, job.symbol) == []
    requeued = get_job(session, job.id)
    assert requeued is not None
    assert (requeued.status, requeued.attempts, requeued.worker) == ("queued", 0, None)
    assert requeued.detail == "Waiting for the rate limiter: its Redis did not answer."
    assert seconds_until(requeued) <= 0
    audit = session.execute(
        text("SELECT count(*) FROM api_calls WHERE symbol = :s"), {"s": job.symbol}
    )
    assert audit.scalar_one() == 0  # a pending audit row of an unsent call is withdrawn


def test_a_limiter_that_does_not_answer_requeues_the_job_in_one_line_without_a_call(
    session: Session, sandbox: SandboxHandle, caplog: pytest.LogCaptureFixture
) -> None:
    # Redis down (a restart): the token cannot be taken. Before, the task died with a traceback.
    job = new_job(session, "XNOREDIS")
    unreachable = redis.Redis(port=free_port(), socket_connect_timeout=1)
    upstream = next(make_upstream(sandbox, unreachable, "50/second"))
    try:
        with caplog.at_level(logging.WARNING):
            result = run(job, upstream, full_history=True)  # reads the full-history memory first
    finally:
        upstream.close()

    assert result.outcome is Outcome.REQUEUED
    assert_requeued_for_the_limiter_without_a_call(session, sandbox, job)
    [line] = [r for r in caplog.records if "rate limiter is unreachable" in r.getMessage()]
    assert line.exc_info is None


def test_a_limiter_lost_between_grant_and_send_gives_the_attempt_back_without_a_call(
    session: Session, sandbox: SandboxHandle
) -> None:
    job = new_job(session, "XREDISGONE")
    with start_redis() as own_redis:
        client: redis.Redis[bytes] = redis.Redis.from_url(own_redis.url, socket_connect_timeout=1)
        upstream = next(make_upstream(sandbox, client, "50/second"))
        try:
            # The worker stalls between the grant and the send (in the statement that counts the
            # attempt), and Redis goes away meanwhile: the token cannot be confirmed.
            with get_engine().connect() as blocker:
                blocker.execute(text("LOCK TABLE api_calls IN SHARE MODE"))
                with ThreadPoolExecutor(max_workers=1) as pool:
                    running = pool.submit(run, job, upstream)
                    wait_until(
                        lambda: upstream.limiter.status().windows[0].used, timeout=30, what="grant"
                    )
                    own_redis.stop()
                    blocker.rollback()
                    result = running.result(timeout=30)
        finally:
            upstream.close()

    assert result.outcome is Outcome.REQUEUED
    # The attempt counted before the send is given back, with its audit row.
    assert_requeued_for_the_limiter_without_a_call(session, sandbox, job)
