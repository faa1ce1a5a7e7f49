"""Sending work to the Celery workers by task name: the producer side of the broker.

The API, the CLI and beat's dispatcher send through here, so none of them imports task code.
"""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

from celery import Celery
from sqlmodel import Session

from shared.core.models import OutputSize
from shared.core.settings import get_settings
from shared.domain.jobs.dispatching import mark_dispatched
from shared.domain.jobs.records import CreatedJob, create_job

logger = logging.getLogger(__name__)

QUEUE = "stockpile"
TASK_RUN_JOB = "stockpile.run_job"
TASK_DISPATCH_DUE_JOBS = "stockpile.dispatch_due_jobs"
TASK_ENQUEUE_DUE_REFRESHES = "stockpile.enqueue_due_refreshes"
TASK_APPLY_RETENTION = "stockpile.apply_retention"

# A producer must not hang a request when Redis is down: the job row is already committed and
# beat's dispatcher re-sends it, so one quick try is enough.
_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0.2, "interval_step": 0.2}


@lru_cache
def producer() -> Celery:
    """A Celery app configured only to publish (JSON, the Stockpile queue)."""
    app = Celery("stockpile-producer", broker=get_settings().require_redis_url())
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        broker_connection_timeout=2,
        broker_transport_options={"socket_timeout": 2, "socket_connect_timeout": 2},
    )
    return app


def send_job(job_id: uuid.UUID) -> bool:
    """Ask a worker to run the job; False (logged) when the broker could not take the message."""
    try:
        producer().send_task(
            TASK_RUN_JOB,
            args=[str(job_id)],
            queue=QUEUE,
            retry=True,
            retry_policy=_PUBLISH_RETRY_POLICY,
        )
    except Exception as exc:  # kombu raises many transport types; the dispatcher will retry
        logger.warning(
            "could not send job %s to the broker (%s); beat will re-send it",
            job_id,
            type(exc).__name__,
        )
        return False
    return True


def submit_job(
    session: Session, symbol: str, *, outputsize: OutputSize | None, source: str
) -> CreatedJob:
    """Create (or find in flight) the job for `symbol`, commit it, then send it to the workers."""
    result = create_job(session, symbol, outputsize=outputsize, source=source)
    session.commit()
    # Commit first, then send: if the broker is down the job stays queued and beat re-sends it.
    if result.created and send_job(result.job.id):
        mark_dispatched(session, result.job.id)
        session.commit()
    return result
