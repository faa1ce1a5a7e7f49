"""Beat's dispatcher: repair abandoned jobs, then send due ones within the fleet's budget."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from shared.db import session_scope
from shared.jobs import count_dispatched_waiting, release_expired_leases, take_due_jobs
from shared.ratelimit import RedisRateLimiter

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
