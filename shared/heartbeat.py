"""The heartbeat of a running job: its process renews a short lease while it works.

A claim starts with a lease of one heartbeat window (JOB_HEARTBEAT_TIMEOUT_SECONDS, 15 s by
default). A thread in the process that runs the job renews it every third of the window, so a
live worker in a call of several minutes keeps its claim, and a dead one (SIGKILL, OOM) loses it
within one window: the dispatcher then puts the job back in the queue. The thread lives in the
process that makes the call, not in Celery's main process, so the death of a pool process alone
is seen too. JOB_LEASE_SECONDS stays the hard bound of one attempt (see `renew_lease`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.db import autocommit_connection
from shared.jobs import renew_lease

logger = logging.getLogger(__name__)

# Renewals per window: one renewal may be late or fail (a database hiccup) without losing it.
RENEWALS_PER_WINDOW = 3


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How long a claim lives without a renewal, and how long it may live at all."""

    window: timedelta
    hard_bound: timedelta

    @property
    def first_lease(self) -> timedelta:
        """The lease a claim starts with."""
        return min(self.window, self.hard_bound)

    @property
    def interval_seconds(self) -> float:
        """Seconds between two renewals."""
        return self.window.total_seconds() / RENEWALS_PER_WINDOW


@contextmanager
def heartbeat(
    job_id: uuid.UUID, *, worker: str, claimed_at: datetime, terms: LeaseTerms
) -> Iterator[None]:
    """Renew the claim in a background thread for as long as the block runs."""
    stopped = threading.Event()

    def beat() -> None:
        while not stopped.wait(terms.interval_seconds):
            try:
                with autocommit_connection() as connection:
                    expires = renew_lease(
                        connection,
                        job_id,
                        worker=worker,
                        claimed_at=claimed_at,
                        window=terms.window,
                        hard_bound=terms.hard_bound,
                    )
            except Exception as exc:  # the next beat tries again; the window allows for it
                logger.warning(
                    "could not renew the lease of job %s (%s)", job_id, type(exc).__name__
                )
                continue
            if expires is None:
                # Another worker holds the job now: its writes win, and ours are refused.
                logger.warning("job %s: lost the claim (its lease expired)", job_id)
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        # Bounded by the statement timeout; after this no renewal of this claim is in flight.
        thread.join()
