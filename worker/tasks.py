"""Thin tasks: decode the job id, hand over to `shared`, and wake the dispatcher when needed.

No job message ever carries a countdown. A job that must wait goes back to PostgreSQL with
`not_before`; the only countdowns are dispatcher follow-ups of at most a few seconds, and
at most one of them is pending at a time (shared/domain/dispatch.py).
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta

from shared.core.models import utcnow
from shared.core.settings import get_settings
from shared.domain.dispatch import dispatch_due_jobs, follow_up_delay, reserve_follow_up
from shared.domain.queue import (
    TASK_APPLY_RETENTION,
    TASK_DISPATCH_DUE_JOBS,
    TASK_ENQUEUE_DUE_REFRESHES,
    TASK_RUN_JOB,
    send_job,
)
from shared.domain.refresh import Outcome, RunPolicy, run_job
from shared.domain.retention import apply_retention, call_retention, job_retention
from shared.domain.tracking import enqueue_due_refreshes
from worker.celery_app import app
from worker.resources import ResourceTask

logger = logging.getLogger(__name__)


def _dispatch_again_in(task: ResourceTask, next_in: float | None) -> None:
    """Schedule one dispatcher run for when it can send something, unless beat is soon enough."""
    tick = get_settings().dispatch_interval_seconds
    delay = follow_up_delay(next_in, tick=tick)
    if delay is None:
        return
    try:
        if reserve_follow_up(task.redis, delay):
            # Expires rather than piles up when the workers are too busy to run it in time.
            dispatch_due_jobs_task.apply_async(countdown=delay, expires=delay + tick)
    except Exception as exc:  # beat's next tick dispatches anyway; only latency is lost
        logger.warning("could not schedule a dispatcher follow-up (%s)", type(exc).__name__)


@app.task(name=TASK_RUN_JOB, bind=True, base=ResourceTask)
def run_job_task(self: ResourceTask, job_id: str) -> str:
    """Refresh one symbol for the job with this id."""
    settings = get_settings()
    result = run_job(
        uuid.UUID(job_id),
        upstream=self.upstream,
        policy=RunPolicy.from_settings(settings),
        worker=f"{self.request.hostname}:{os.getpid()}",
    )
    if result.outcome is Outcome.REQUEUED:
        _dispatch_again_in(self, result.retry_in)
    return result.outcome.value


@app.task(name=TASK_DISPATCH_DUE_JOBS, bind=True, base=ResourceTask)
def dispatch_due_jobs_task(self: ResourceTask) -> int:
    """Repair abandoned jobs and send due ones within the fleet's budget."""
    settings = get_settings()
    report = dispatch_due_jobs(
        limiter=self.upstream.limiter,
        send=send_job,
        resend_after=timedelta(seconds=settings.job_resend_after_seconds),
        lease_window=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
    )
    _dispatch_again_in(self, report.next_in)
    return len(report.sent)


@app.task(name=TASK_ENQUEUE_DUE_REFRESHES)
def enqueue_due_refreshes_task() -> int:
    """Create refresh jobs for tracked symbols that lag the market, then dispatch them."""
    settings = get_settings()
    created = enqueue_due_refreshes(
        now=utcnow(), min_interval=timedelta(seconds=settings.refresh_min_interval_seconds)
    )
    if created:
        dispatch_due_jobs_task.delay()
    return len(created)


@app.task(name=TASK_APPLY_RETENTION)
def apply_retention_task() -> int:
    """Delete finished jobs and audited calls past their retention window, in small batches."""
    settings = get_settings()
    report = apply_retention(job_keep=job_retention(settings), call_keep=call_retention(settings))
    return report.jobs + report.api_calls
