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
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.core.db import autocommit_connection
from shared.domain.jobs.lifecycle import renew_lease

logger = logging.getLogger(__name__)

# Renewals per window: one renewal may be late or fail (a database hiccup) without losing it.
RENEWALS_PER_WINDOW = 3
# A run ends its job (commits the outcome) a moment before it releases its claim, and a renewal
# in between finds the job no longer running. So a refused renewal waits this long for the run to
# release the claim before it calls the claim lost. (A run whose final write is refused says so
# itself.) It holds up the other claims' renewals at most this long: a window allows for it.
ENDING_GRACE_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class LeaseTerms:
    """How long a claim lives without a renewal, and how long it may live at all."""

    window: timedelta  # JOB_HEARTBEAT_TIMEOUT_SECONDS
    hard_bound: timedelta  # JOB_LEASE_SECONDS

    @property
    def first_lease(self) -> timedelta:
        """The lease a claim starts with."""
        return min(self.window, self.hard_bound)

    @property
    def interval_seconds(self) -> float:
        """Seconds between two renewals."""
        return self.window.total_seconds() / RENEWALS_PER_WINDOW


@dataclass(eq=False, slots=True)
class _Claim:
    job_id: uuid.UUID
    worker: str
    claimed_at: datetime
    terms: LeaseTerms
    next_renewal: float  # time.monotonic()


class _Renewer:
    """The process's one heartbeat thread: it renews every claim its runs hold, each when due.

    One long-lived thread rather than one per run: starting and joining a thread for every job
    cost about 4 ms of a job's wall time (`bench.job_cpu`).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._claims: list[_Claim] = []
        self._renewing: _Claim | None = None
        threading.Thread(target=self._run, name="lease-heartbeat", daemon=True).start()

    def hold(self, claim: _Claim) -> None:
        with self._changed:
            self._claims.append(claim)
            self._changed.notify_all()

    def release(self, claim: _Claim) -> None:
        """Stop renewing `claim`; once this returns no renewal of it is in flight or to come."""
        with self._changed:
            if claim in self._claims:
                self._claims.remove(claim)
                self._changed.notify_all()  # a refused renewal of it may be waiting for this
            # Bounded by the statement timeout and the ending grace.
            self._changed.wait_for(lambda: self._renewing is not claim)

    def _run(self) -> None:
        while True:
            with self._changed:
                claim = self._wait_for_due_claim()
                self._renewing = claim
            refused = self._renew(claim)
            with self._changed:
                if refused and not self._released_soon(claim):
                    # Its writes win, and ours are refused.
                    logger.warning("job %s: lost the claim (its lease expired)", claim.job_id)
                    self._claims.remove(claim)
                self._renewing = None
                claim.next_renewal = time.monotonic() + claim.terms.interval_seconds
                self._changed.notify_all()

    def _released_soon(self, claim: _Claim) -> bool:
        """Whether its run releases `claim` within the ending grace (called holding the lock)."""
        return self._changed.wait_for(
            lambda: claim not in self._claims, timeout=ENDING_GRACE_SECONDS
        )

    def _wait_for_due_claim(self) -> _Claim:
        """The claim whose renewal is due first, once it is due (called holding the lock)."""
        while True:
            if not self._claims:
                self._changed.wait()
                continue
            claim = min(self._claims, key=lambda c: c.next_renewal)
            wait = claim.next_renewal - time.monotonic()
            if wait <= 0:
                return claim
            self._changed.wait(wait)  # a new or released claim wakes it sooner

    @staticmethod
    def _renew(claim: _Claim) -> bool:
        """Renew once; whether the row refused it (the job ended, or another worker holds it)."""
        try:
            with autocommit_connection() as connection:
                expires = renew_lease(
                    connection,
                    claim.job_id,
                    worker=claim.worker,
                    claimed_at=claim.claimed_at,
                    window=claim.terms.window,
                    hard_bound=claim.terms.hard_bound,
                )
        except Exception as exc:  # the next beat tries again; the window allows for it
            logger.warning(
                "could not renew the lease of job %s (%s)", claim.job_id, type(exc).__name__
            )
            return False
        return expires is None


_renewer: _Renewer | None = None
_renewer_lock = threading.Lock()


def _process_renewer() -> _Renewer:
    global _renewer
    with _renewer_lock:
        if _renewer is None:
            _renewer = _Renewer()
        return _renewer


def _forget_renewer() -> None:
    # A forked child has none of its parent's threads: it starts its own renewer when needed.
    global _renewer, _renewer_lock
    _renewer, _renewer_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_renewer)


@contextmanager
def heartbeat(
    job_id: uuid.UUID, *, worker: str, claimed_at: datetime, terms: LeaseTerms
) -> Iterator[None]:
    """Renew the claim in the background for as long as the block runs, and never after."""
    claim = _Claim(job_id, worker, claimed_at, terms, time.monotonic() + terms.interval_seconds)
    renewer = _process_renewer()
    renewer.hold(claim)
    try:
        yield
    finally:
        renewer.release(claim)
