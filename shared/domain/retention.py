"""Retention: delete finished jobs and audited calls older than their window, in small batches.

Each batch is one short statement in its own transaction: it picks at most `batch` rows with
`FOR UPDATE SKIP LOCKED` in a materialized CTE (a row a worker holds is skipped, never waited
for, and the LIMIT is evaluated once), deletes them, and adds what it deleted to the
`*_deleted` tallies in the same statement, so `/metrics` totals never go down. Jobs in flight
(`queued`, `running`) are never candidates; calls are kept at least as long as the rate
limiter's re-seeding reads them (`call_retention`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import CTE, Select, func, insert, literal, select
from sqlmodel import Session

from shared.core.db import session_scope
from shared.core.models import RowTally
from shared.core.rate_windows import parse_rate_limits
from shared.core.settings import Settings
from shared.domain.audit import old_calls_deleted
from shared.domain.jobs.records import finished_jobs_deleted
from shared.domain.tallies import API_CALLS_DELETED, JOBS_DELETED, compact_tallies
from shared.upstream.ratelimit import history_needed

logger = logging.getLogger(__name__)

# Rows per statement: a few milliseconds of locks and WAL, so nothing waits on a batch.
BATCH_SIZE = 500
# One run stops after this long; the next run (beat) carries on where it stopped.
RUN_SECONDS = 10.0

_ROW_TALLIES = RowTally.metadata.tables["row_tallies"]


def _tallied(gone: CTE, kind: str) -> Select[int]:
    """How many rows `gone` deleted, with their count by key added to the `kind` tally in the
    same statement (the triggers subtract them from the stored counts)."""
    tally = (
        insert(_ROW_TALLIES)
        .from_select(
            ["kind", "key", "delta"],
            select(literal(kind), gone.c.key, func.count()).group_by(gone.c.key),
        )
        .cte("tally")
    )
    return select(func.count()).select_from(gone).add_cte(tally)


_PURGE_JOBS = _tallied(finished_jobs_deleted(), JOBS_DELETED)
_PURGE_CALLS = _tallied(old_calls_deleted(), API_CALLS_DELETED)


@dataclass(frozen=True, slots=True)
class RetentionReport:
    """Rows one run deleted, and whether it stopped with rows past the window left."""

    jobs: int
    api_calls: int
    finished: bool


def job_retention(settings: Settings) -> timedelta:
    """How long a finished job is kept."""
    return timedelta(days=settings.job_retention_days)


def call_retention(settings: Settings) -> timedelta:
    """How long an audited call is kept: its window, but never less than the limiter reads."""
    needed = history_needed(parse_rate_limits(settings.alphavantage_rate_limits))
    return max(timedelta(days=settings.api_call_retention_days), timedelta(seconds=needed))


def purge_finished_jobs(session: Session, *, keep: timedelta, batch: int = BATCH_SIZE) -> int:
    """Delete up to `batch` jobs finished more than `keep` ago; the caller commits."""
    return int(
        session.connection().execute(_PURGE_JOBS, {"keep": keep, "batch": batch}).scalar_one()
    )


def purge_api_calls(session: Session, *, keep: timedelta, batch: int = BATCH_SIZE) -> int:
    """Delete up to `batch` audited calls made more than `keep` ago; the caller commits."""
    return int(
        session.connection().execute(_PURGE_CALLS, {"keep": keep, "batch": batch}).scalar_one()
    )


def apply_retention(
    *,
    job_keep: timedelta,
    call_keep: timedelta,
    batch: int = BATCH_SIZE,
    run_seconds: float = RUN_SECONDS,
) -> RetentionReport:
    """Delete in batches, one transaction each, until nothing is past the window or time is up."""
    deadline = time.monotonic() + run_seconds
    totals = {"jobs": 0, "api_calls": 0}
    purges: list[tuple[str, Callable[..., int], timedelta]] = [
        ("jobs", purge_finished_jobs, job_keep),
        ("api_calls", purge_api_calls, call_keep),
    ]
    finished = True
    for name, purge, keep in purges:
        while True:
            if time.monotonic() > deadline:
                finished = False
                break
            with session_scope() as session:
                deleted = purge(session, keep=keep, batch=batch)
            totals[name] += deleted
            if deleted < batch:
                break
    with session_scope() as session:
        compact_tallies(session)
    if totals["jobs"] or totals["api_calls"]:
        logger.info(
            "retention deleted %d finished jobs and %d audited calls",
            totals["jobs"],
            totals["api_calls"],
        )
    return RetentionReport(jobs=totals["jobs"], api_calls=totals["api_calls"], finished=finished)
