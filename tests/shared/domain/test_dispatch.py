"""The dispatcher against real PostgreSQL and Redis: it sends only what the budget serves now."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import redis
from sqlalchemy import text
from sqlmodel import Session

from shared.core.rate_windows import parse_rate_limits
from shared.domain.dispatch import (
    FOLLOW_UP_KEY,
    MAX_FOLLOW_UP_SECONDS,
    MAX_WAITING,
    MIN_FOLLOW_UP_SECONDS,
    REFILL_SECONDS,
    SETTLE_SECONDS,
    dispatch_due_jobs,
    follow_up_delay,
    reserve_follow_up,
)
from shared.domain.jobs.records import create_job
from shared.upstream.ratelimit import RedisRateLimiter
from tests.support import redis_now

RESEND_AFTER = 120.0


class Recorder:
    """A `send` that records what the dispatcher sent (thread-safe)."""

    def __init__(self) -> None:
        self.sent: list[uuid.UUID] = []
        self._lock = threading.Lock()

    def __call__(self, job_id: uuid.UUID) -> bool:
        with self._lock:
            self.sent.append(job_id)
        return True


MakeLimiter = Callable[[str], RedisRateLimiter]


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis[bytes]]:
    connection: redis.Redis[bytes] = redis.Redis.from_url(redis_url)
    connection.delete(FOLLOW_UP_KEY)
    yield connection
    connection.delete(FOLLOW_UP_KEY)
    connection.close()


@pytest.fixture
def make_limiter(client: redis.Redis[bytes]) -> Iterator[MakeLimiter]:
    prefix = f"test:dispatch:{uuid.uuid4().hex}"

    def make(limits: str) -> RedisRateLimiter:
        return RedisRateLimiter(
            client, parse_rate_limits(limits), history=lambda: (), key_prefix=prefix
        )

    yield make
    for key in client.scan_iter(match=f"{prefix}:*"):
        client.delete(key)


def backlog(session: Session, count: int) -> list[uuid.UUID]:
    """`count` queued jobs for distinct symbols, committed and never sent, oldest first."""
    ids = [create_job(session, f"B{i:04d}").job.id for i in range(count)]
    session.commit()
    return ids


def database_now(session: Session) -> float:
    """PostgreSQL's clock (not the transaction's start), which decides when a job is due."""
    session.commit()
    now = float(session.execute(text("SELECT extract(epoch FROM clock_timestamp())")).scalar_one())
    # What the caller does next starts a new transaction, so its now() is after this instant.
    session.commit()
    return now


def dispatched(session: Session) -> set[uuid.UUID]:
    session.rollback()  # a fresh snapshot
    rows = session.execute(text("SELECT id FROM jobs WHERE dispatched_at IS NOT NULL"))
    return {row.id for row in rows}


def dispatch(limiter: RedisRateLimiter, send: Recorder) -> float | None:
    report = dispatch_due_jobs(
        limiter=limiter,
        send=send,
        resend_after=timedelta(seconds=RESEND_AFTER),
        lease_window=timedelta(seconds=15),
    )
    assert report.sent == send.sent[len(send.sent) - len(report.sent) :]
    return report.next_in


def test_dispatch_backlog_of_1000_sends_only_the_day_budget_left(
    session: Session, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter("25/day")
    for _ in range(20):
        assert limiter.acquire().granted
    ids = backlog(session, 1000)
    send = Recorder()

    next_in = dispatch(limiter, send)

    assert send.sent == ids[:5]  # oldest first
    assert dispatched(session) == set(ids[:5])  # the other 995 stay in PostgreSQL
    assert next_in == SETTLE_SECONDS  # look again once the five have taken their tokens


def test_dispatch_second_tick_sends_nothing_while_sent_jobs_wait(
    session: Session, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter("25/day")
    for _ in range(20):
        limiter.acquire()
    ids = backlog(session, 1000)
    send = Recorder()
    dispatch(limiter, send)

    # The five sent jobs have not taken their tokens yet: they will spend the budget.
    assert dispatch(limiter, send) == SETTLE_SECONDS
    assert len(send.sent) == 5
    # Their tokens taken, the day window is full: still nothing, and nothing to follow up
    # (the budget frees in a day; beat's ticks look again, no broker countdown is scheduled).
    for _ in range(5):
        assert limiter.acquire().granted
    next_in = dispatch(limiter, send)
    assert len(send.sent) == 5
    assert dispatched(session) == set(ids[:5])
    assert next_in is not None
    assert next_in > 86_000
    assert follow_up_delay(next_in, tick=10) is None


def test_dispatch_sends_the_next_jobs_once_the_budget_frees(
    session: Session, make_limiter: MakeLimiter, client: redis.Redis[bytes]
) -> None:
    limiter = make_limiter("3/2second")
    ids = backlog(session, 1000)
    send = Recorder()
    assert dispatch(limiter, send) == SETTLE_SECONDS  # look again once the three took tokens
    assert send.sent == ids[:3]
    # The three workers take their tokens and finish their jobs.
    grants = [limiter.acquire() for _ in range(3)]
    assert all(grant.granted for grant in grants)
    session.execute(
        text("UPDATE jobs SET status = 'succeeded' WHERE id = ANY(:ids)"), {"ids": ids[:3]}
    )
    session.commit()

    next_in = dispatch(limiter, send)
    after = redis_now(client)
    assert len(send.sent) == 3
    assert next_in is not None
    # When the oldest token leaves the 2-second window, by Redis' clock.
    assert grants[0].at + 2.0 - after <= next_in <= 2.0

    time.sleep(next_in + 0.05)
    dispatch(limiter, send)
    assert send.sent == ids[:6]


def test_dispatch_during_a_cooldown_sends_nothing_until_it_ends(
    session: Session, make_limiter: MakeLimiter, client: redis.Redis[bytes]
) -> None:
    limiter = make_limiter("50/second")
    backlog(session, 10)
    before = redis_now(client)
    limiter.cooldown(3.0, reason="upstream said so")
    send = Recorder()

    next_in = dispatch(limiter, send)
    after = redis_now(client)

    assert send.sent == []
    assert next_in is not None
    assert 3.0 - (after - before) <= next_in <= 3.0  # when the cooldown ends, by Redis' clock


def test_dispatch_keeps_at_most_max_waiting_jobs_in_the_broker(
    session: Session, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter("1200/minute")
    ids = backlog(session, MAX_WAITING + 50)
    send = Recorder()

    next_in = dispatch(limiter, send)
    assert send.sent == ids[:MAX_WAITING]
    assert next_in == REFILL_SECONDS

    # Workers started 30 of them (running jobs no longer wait in the broker): refill 30.
    session.execute(
        text("UPDATE jobs SET status = 'running' WHERE id = ANY(:ids)"), {"ids": ids[:30]}
    )
    session.commit()
    dispatch(limiter, send)
    assert send.sent == ids[: MAX_WAITING + 30]


def test_dispatch_with_nothing_queued_needs_no_follow_up(
    session: Session, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter("1/second")
    send = Recorder()
    assert dispatch(limiter, send) is None
    assert send.sent == []


def test_dispatch_follow_up_when_a_waiting_job_becomes_due(
    session: Session, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter("50/second")
    before = database_now(session)
    job = create_job(session, "LATER").job
    session.execute(
        text("UPDATE jobs SET not_before = now() + interval '3 seconds' WHERE id = :id"),
        {"id": job.id},
    )
    session.commit()
    send = Recorder()

    next_in = dispatch(limiter, send)
    after = database_now(session)

    assert send.sent == []
    assert next_in is not None
    assert 3.0 - (after - before) <= next_in <= 3.0  # when it becomes due, by PostgreSQL's clock


def test_dispatch_follow_up_when_a_lease_missed_its_renewals_and_not_before(
    session: Session, make_limiter: MakeLimiter
) -> None:
    # Window 15 s: a live holder's lease ends 10-15 s away; one ending in 4 s missed renewals.
    limiter = make_limiter("50/second")
    before = database_now(session)
    live, dying = (create_job(session, symbol).job for symbol in ("LIVE", "DYING"))
    for job, seconds in ((live, 14), (dying, 4)):
        session.execute(
            text(
                "UPDATE jobs SET status = 'running', worker = 'w:1', started_at = now(),"
                " lease_expires_at = now() + make_interval(secs => :s) WHERE id = :id"
            ),
            {"id": job.id, "s": seconds},
        )
    session.commit()
    send = Recorder()

    next_in = dispatch(limiter, send)
    after = database_now(session)

    assert send.sent == []
    assert next_in is not None
    assert 4.0 - (after - before) <= next_in <= 4.0  # the dying lease's end, by PostgreSQL's clock
    session.execute(text("UPDATE jobs SET status = 'succeeded' WHERE id = :id"), {"id": dying.id})
    session.commit()
    assert dispatch(limiter, send) is None  # the live lease alone calls for no follow-up


def test_dispatch_concurrent_runs_share_one_budget(
    session: Session, make_limiter: MakeLimiter
) -> None:
    limiter = make_limiter("5/minute")
    backlog(session, 200)
    send = Recorder()
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        dispatch(limiter, send)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len(send.sent) == 5
    assert len(set(send.sent)) == 5


@pytest.mark.parametrize(
    ("next_in", "tick", "expected"),
    [
        (None, 10.0, None),  # nothing waits
        (0.0, 10.0, MIN_FOLLOW_UP_SECONDS),  # batch tokens freed close together
        (1.5, 10.0, 1.5),  # exactly when the token frees
        (1.5, 1.0, 1.5),  # sooner than beat's tick can be relied on
        (7.0, 10.0, MAX_FOLLOW_UP_SECONDS),  # beat may come too late: hop closer
        (12.0, 10.0, None),  # beat's next tick comes first
        (86_400.0, 10.0, None),  # the day window: never a long countdown
    ],
)
def test_follow_up_delay_short_countdowns_only(
    next_in: float | None, tick: float, expected: float | None
) -> None:
    delay = follow_up_delay(next_in, tick=tick)
    assert delay == expected
    assert delay is None or delay <= MAX_FOLLOW_UP_SECONDS


def test_reserve_follow_up_one_pending_unless_an_earlier_one_is_needed(
    client: redis.Redis[bytes],
) -> None:
    client.delete(FOLLOW_UP_KEY)
    assert reserve_follow_up(client, 2.0)
    assert not reserve_follow_up(client, 2.0)  # already covered
    assert not reserve_follow_up(client, 3.0)  # the pending one comes first
    assert reserve_follow_up(client, 0.3)  # the pending one would be too late
    assert not reserve_follow_up(client, 0.3)
    time.sleep(0.4)  # the follow-up is due: the next run may schedule its own
    assert reserve_follow_up(client, 1.0)
