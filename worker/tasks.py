"""Thin tasks: decode the job id, hand over to `shared`, and wake the dispatcher when needed.

No job message ever carries a countdown. A job that must wait goes back to PostgreSQL with
`not_before`; the only countdowns are dispatcher follow-ups of at most a few seconds, and
at most one of them is pending at a time (shared/dispatch.py).
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from typing import Any

import redis
from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from shared.db import dispose_engine
from shared.dispatch import dispatch_due_jobs, follow_up_delay, reserve_follow_up
from shared.models import utcnow
from shared.queue import (
    TASK_APPLY_RETENTION,
    TASK_DISPATCH_DUE_JOBS,
    TASK_ENQUEUE_DUE_REFRESHES,
    TASK_RUN_JOB,
    send_job,
)
from shared.refresh import Outcome, RunPolicy, run_job
from shared.retention import apply_retention, call_retention, job_retention
from shared.settings import get_settings
from shared.tracking import enqueue_due_refreshes
from shared.upstream import Upstream, make_redis, make_upstream
from worker.celery_app import app

logger = logging.getLogger(__name__)

_upstream: Upstream | None = None
_redis: redis.Redis[Any] | None = None


@worker_process_init.connect
def _reset_after_fork(**_: Any) -> None:
    # Pooled connections and HTTP clients must never cross the prefork fork.
    global _upstream, _redis
    dispose_engine()
    _upstream = None
    _redis = None


@worker_process_shutdown.connect
def _close_upstream(**_: Any) -> None:
    if _upstream is not None:
        _upstream.close()


def _process_upstream() -> Upstream:
    global _upstream
    if _upstream is None:
        _upstream = make_upstream(get_settings())
    return _upstream


def _process_redis() -> redis.Redis[Any]:
    global _redis
    if _redis is None:
        _redis = make_redis(get_settings())
    return _redis


def _dispatch_again_in(next_in: float | None) -> None:
    """Schedule one dispatcher run for when it can send something, unless beat is soon enough."""
    tick = get_settings().dispatch_interval_seconds
    delay = follow_up_delay(next_in, tick=tick)
    if delay is None:
        return
    try:
        if reserve_follow_up(_process_redis(), delay):
            # Expires rather than piles up when the workers are too busy to run it in time.
            dispatch_due_jobs_task.apply_async(countdown=delay, expires=delay + tick)
    except Exception as exc:  # beat's next tick dispatches anyway; only latency is lost
        logger.warning("could not schedule a dispatcher follow-up (%s)", type(exc).__name__)


@app.task(name=TASK_RUN_JOB, bind=True)
def run_job_task(self: Task, job_id: str) -> str:
    """Refresh one symbol for the job with this id."""
    settings = get_settings()
    result = run_job(
        uuid.UUID(job_id),
        upstream=_process_upstream(),
        policy=RunPolicy.from_settings(settings),
        worker=f"{self.request.hostname}:{os.getpid()}",
    )
    if result.outcome is Outcome.REQUEUED:
        _dispatch_again_in(result.retry_in)
    return result.outcome.value


@app.task(name=TASK_DISPATCH_DUE_JOBS)
def dispatch_due_jobs_task() -> int:
    """Repair abandoned jobs and send due ones within the fleet's budget."""
    settings = get_settings()
    report = dispatch_due_jobs(
        limiter=_process_upstream().limiter,
        send=send_job,
        resend_after=timedelta(seconds=settings.job_resend_after_seconds),
        lease_window=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
    )
    _dispatch_again_in(report.next_in)
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
