"""Beat's dispatcher: repair abandoned jobs, then send due ones within the fleet's budget.

Beat runs it every DISPATCH_INTERVAL_SECONDS, but tokens free between ticks: a `2/second`
window frees its budget many times per tick, and a token freed just after a tick would idle
until the next one. So each run also says when another run could send something (the next
token frees, a waiting job becomes due, the lease of a job whose worker stopped renewing it
lapses), and the worker schedules one follow-up run for then when that comes within a few
seconds (a short broker countdown, DESIGN.md decision 3). Long waits stay in PostgreSQL and are
beat's to pick up.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis

from shared.core.db import session_scope
from shared.domain.jobs.dispatching import (
    count_dispatched_waiting,
    lock_dispatch,
    release_expired_leases,
    seconds_until_due,
    seconds_until_lease_lapses,
    take_due_jobs,
)
from shared.upstream.ratelimit import LimiterStatus, RedisRateLimiter

logger = logging.getLogger(__name__)

# Follow-ups closer together than this would cost more runs than the tokens they catch.
MIN_FOLLOW_UP_SECONDS = 0.2
# The longest countdown a follow-up gets; a longer wait is covered in hops or by beat.
MAX_FOLLOW_UP_SECONDS = 5.0
# Jobs just sent take their tokens within moments; after this the limiter shows the next wait.
SETTLE_SECONDS = 0.25
# At most this many sent jobs wait in the broker for a worker: a premium budget (1200/minute)
# is no reason to move a whole backlog out of PostgreSQL at once, where the order is kept and a
# long broker queue would outlast `resend_after` and be sent twice. Refilled as workers drain it.
MAX_WAITING = 100
# With the broker holding MAX_WAITING jobs, look again this often to refill it.
REFILL_SECONDS = 1.0
FOLLOW_UP_KEY = "stockpile:dispatch:follow_up"
# Beat's ticks and the dispatcher's follow-ups travel on their own queue: behind a deep job queue
# they would wait (and expire) exactly when the dispatcher matters most.
CONTROL_QUEUE = "stockpile.control"
# An already scheduled follow-up this much later than needed is replaced by an earlier one.
_EARLIER_BY_MS = 50


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one dispatcher run did, and in how many seconds another could send something."""

    released: int
    budget: int
    sent: list[uuid.UUID]
    next_in: float | None


def dispatch_due_jobs(
    *,
    limiter: RedisRateLimiter,
    send: Callable[[uuid.UUID], bool],
    resend_after: timedelta,
    lease_window: timedelta,
) -> DispatchReport:
    """Send only as many due jobs as the budget can serve now, oldest first."""
    with session_scope() as session:
        released = release_expired_leases(session)
    if released:
        logger.warning("released %d jobs whose worker stopped answering", released)
    limiter.ensure_initialized()
    with session_scope() as session:
        # Concurrent runs (beat's tick and a follow-up) would both spend the same budget.
        lock_dispatch(session)
        status = limiter.status()
        # Jobs sent recently are still on their way to a worker and will spend this budget.
        waiting = count_dispatched_waiting(session, resend_after=resend_after)
        budget = max(0, min(status.available, MAX_WAITING) - waiting)
        job_ids = take_due_jobs(session, budget=budget, resend_after=resend_after)
        due_in = seconds_until_due(session, resend_after=resend_after)
        # A dead worker's job runs again as soon as its lease lapses, not at beat's next tick.
        lapse_in = seconds_until_lease_lapses(session, window=lease_window)
    sent = [job_id for job_id in job_ids if send(job_id)]
    if sent:
        logger.info("dispatched %d due jobs (budget %d)", len(sent), budget)
    next_in = (
        None
        if due_in is None
        else max(due_in, _budget_frees_in(status, pending=waiting + len(job_ids)))
    )
    if lapse_in is not None:
        next_in = lapse_in if next_in is None else min(next_in, lapse_in)
    return DispatchReport(released=released, budget=budget, sent=sent, next_in=next_in)


def _budget_frees_in(status: LimiterStatus, *, pending: int) -> float:
    """Seconds until a token may be free for a job not yet sent (`pending` are on their way)."""
    full = [w.retry_after for w in status.windows if w.remaining == 0]
    if status.cooldown_remaining > 0 or full:
        return max([status.cooldown_remaining, *full])
    if pending >= MAX_WAITING:
        return REFILL_SECONDS
    if pending >= status.available:
        # The jobs on their way use up what is left; once they have taken their tokens the
        # limiter can tell when the next one frees. (This polls only while sent jobs wait, and
        # the polls run on the workers: with none free, none run.)
        return SETTLE_SECONDS
    return 0.0


def follow_up_delay(next_in: float | None, *, tick: float) -> float | None:
    """Countdown for a follow-up dispatcher run, or None when beat's next tick is soon enough."""
    if next_in is None:
        return None
    if next_in <= MAX_FOLLOW_UP_SECONDS:
        return max(next_in, MIN_FOLLOW_UP_SECONDS)
    if next_in < tick:
        # Beat's next tick may come later than needed: hop closer, then schedule exactly.
        return MAX_FOLLOW_UP_SECONDS
    return None


def reserve_follow_up(client: redis.Redis[Any], delay: float) -> bool:
    """Whether the caller should schedule a follow-up in `delay` s (none comes sooner already)."""
    ms = max(1, round(delay * 1000))
    if client.set(FOLLOW_UP_KEY, "1", nx=True, px=ms):
        return True
    # The key lives until the scheduled follow-up is due: a later one does not cover this need.
    if int(client.pttl(FOLLOW_UP_KEY)) > ms + _EARLIER_BY_MS:
        client.set(FOLLOW_UP_KEY, "1", px=ms)
        return True
    return False
