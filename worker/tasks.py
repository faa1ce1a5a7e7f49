"""Thin tasks: decode the job id, hand over to `shared`, and send short retries back quickly."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from typing import Any

from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from shared.db import dispose_engine
from shared.dispatch import dispatch_due_jobs
from shared.models import utcnow
from shared.queue import TASK_DISPATCH_DUE_JOBS, TASK_ENQUEUE_DUE_REFRESHES, TASK_RUN_JOB, send_job
from shared.refresh import Outcome, RunPolicy, run_job
from shared.settings import get_settings
from shared.tracking import enqueue_due_refreshes
from shared.upstream import Upstream, make_upstream
from worker.celery_app import app

logger = logging.getLogger(__name__)

# A requeued job due this soon is sent straight back with a countdown instead of waiting for beat.
SHORT_RETRY_SECONDS = 5.0

_upstream: Upstream | None = None


@worker_process_init.connect
def _reset_after_fork(**_: Any) -> None:
    # Pooled connections and HTTP clients must never cross the prefork fork.
    global _upstream
    dispose_engine()
    _upstream = None


@worker_process_shutdown.connect
def _close_upstream(**_: Any) -> None:
    if _upstream is not None:
        _upstream.close()


def _process_upstream() -> Upstream:
    global _upstream
    if _upstream is None:
        _upstream = make_upstream(get_settings())
    return _upstream


@app.task(name=TASK_RUN_JOB, bind=True)
def run_job_task(self: Task, job_id: str) -> str:
    """Refresh one symbol for the job with this id."""
    settings = get_settings()
    result = run_job(
        uuid.UUID(job_id),
        upstream=_process_upstream(),
        policy=RunPolicy(
            max_attempts=settings.job_max_attempts,
            lease=timedelta(seconds=settings.job_lease_seconds),
            full_history=settings.alphavantage_full_history,
        ),
        worker=f"{self.request.hostname}:{os.getpid()}",
    )
    if (
        result.outcome is Outcome.REQUEUED
        and result.retry_in is not None
        and result.retry_in <= SHORT_RETRY_SECONDS
    ):
        send_job(uuid.UUID(job_id), countdown=result.retry_in)
    return result.outcome.value


@app.task(name=TASK_DISPATCH_DUE_JOBS)
def dispatch_due_jobs_task() -> int:
    """Repair abandoned jobs and send due ones within the fleet's budget."""
    settings = get_settings()
    report = dispatch_due_jobs(
        limiter=_process_upstream().limiter,
        send=send_job,
        resend_after=timedelta(seconds=settings.job_resend_after_seconds),
    )
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
