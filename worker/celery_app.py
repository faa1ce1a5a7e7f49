"""The Celery app: `celery -A worker.celery_app worker|beat|flower`.

Configured for at-least-once work (DESIGN.md decision 8): acks after the task, requeue when the
worker process dies, one message reserved at a time, JSON only, no result backend (PostgreSQL's
job table is the truth), hard time limits below the job lease.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import setup_logging
from kombu.entity import Queue

from shared.core.logs import configure_logging
from shared.core.settings import get_settings
from shared.domain.dispatch import CONTROL_QUEUE
from shared.domain.queue import (
    QUEUE,
    TASK_APPLY_RETENTION,
    TASK_DISPATCH_DUE_JOBS,
    TASK_ENQUEUE_DUE_REFRESHES,
)
from worker.beat_log import attach_broker_outage_filter

settings = get_settings()


@setup_logging.connect
def _configure_logging(**_: Any) -> None:
    # Connecting this signal stops Celery from installing its own, unredacted handlers.
    configure_logging(settings)
    # Beat's ticks missed while the broker is down: one warning each, not a traceback.
    attach_broker_outage_filter()


# A task must finish well within the lease, or a second worker could claim the same job.
TIME_LIMIT_SECONDS = int(settings.job_lease_seconds * 0.75)

app = Celery("stockpile", include=["worker.tasks"])
app.conf.update(
    broker_url=settings.require_redis_url(),
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,
    broker_transport_options={
        # Redelivery of a message whose worker died without acking; our tasks are short.
        "visibility_timeout": max(60, settings.job_lease_seconds * 2),
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
    },
    task_default_queue=QUEUE,
    # Every worker consumes both queues (kombu polls them in turn): see CONTROL_QUEUE.
    task_queues=(Queue(QUEUE), Queue(CONTROL_QUEUE)),  # type: ignore[no-untyped-call]
    task_routes={
        TASK_DISPATCH_DUE_JOBS: {"queue": CONTROL_QUEUE},
        TASK_ENQUEUE_DUE_REFRESHES: {"queue": CONTROL_QUEUE},
        TASK_APPLY_RETENTION: {"queue": CONTROL_QUEUE},
    },
    task_create_missing_queues=False,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=TIME_LIMIT_SECONDS,
    task_soft_time_limit=int(TIME_LIMIT_SECONDS * 0.8),
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    worker_disable_rate_limits=True,  # the fleet-wide limiter in Redis does this job
    worker_send_task_events=True,
    task_send_sent_event=True,
    timezone="UTC",
    enable_utc=True,
    beat_schedule={
        "dispatch-due-jobs": {
            "task": TASK_DISPATCH_DUE_JOBS,
            "schedule": settings.dispatch_interval_seconds,
            "options": {"expires": settings.dispatch_interval_seconds},
        },
        "enqueue-due-refreshes": {
            "task": TASK_ENQUEUE_DUE_REFRESHES,
            "schedule": settings.refresh_check_interval_seconds,
            "options": {"expires": settings.refresh_check_interval_seconds},
        },
        "apply-retention": {
            "task": TASK_APPLY_RETENTION,
            "schedule": settings.retention_interval_seconds,
            "options": {"expires": settings.retention_interval_seconds},
        },
    },
)
