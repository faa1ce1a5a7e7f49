"""Beat's periodic work: repair abandoned jobs, send due ones within budget, create refreshes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.db import session_scope
from shared.jobs import count_dispatched_waiting, create_job, release_expired_leases, take_due_jobs
from shared.market_calendar import last_completed_trading_day
from shared.ratelimit import RedisRateLimiter
from shared.tracking import symbols_due

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DispatchReport:
    """What one dispatcher tick did."""

    released: int
    budget: int
    sent: list[uuid.UUID]


def dispatch_due_jobs(
    *,
    limiter: RedisRateLimiter,
    send: Callable[[uuid.UUID], bool],
    resend_after: timedelta,
) -> DispatchReport:
    """Send only as many due jobs as the budget can serve now, oldest first."""
    with session_scope() as session:
        released = release_expired_leases(session)
    if released:
        logger.warning("released %d jobs whose worker stopped answering", released)
    available = limiter.available_now()
    with session_scope() as session:
        # Jobs sent recently are still on their way to a worker and will spend this budget.
        waiting = count_dispatched_waiting(session, resend_after=resend_after)
        budget = max(0, available - waiting)
        job_ids = take_due_jobs(session, budget=budget, resend_after=resend_after)
    sent = [job_id for job_id in job_ids if send(job_id)]
    if sent:
        logger.info("dispatched %d due jobs (budget %d)", len(sent), budget)
    return DispatchReport(released=released, budget=budget, sent=sent)


def enqueue_due_refreshes(*, now: datetime, min_interval: timedelta) -> list[uuid.UUID]:
    """Create refresh jobs for tracked symbols behind the last completed trading day."""
    target = last_completed_trading_day(now)
    created: list[uuid.UUID] = []
    with session_scope() as session:
        for symbol in symbols_due(session, target=target, min_interval=min_interval):
            result = create_job(session, symbol, source="beat")
            if result.created:
                created.append(result.job.id)
    if created:
        logger.info("created %d refresh jobs for data before %s", len(created), target)
    return created
