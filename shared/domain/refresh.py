"""Running one refresh job: the single code path of Celery workers and `stockpile fetch`.

claim → already current? → take a token → count the attempt → confirm the token → call
AlphaVantage → audit the call → upsert the prices and mark the job done in one transaction. Waits
longer than a second go back to PostgreSQL (`not_before`), never into a sleeping worker or a broker
countdown.

A job that calls AlphaVantage once commits three times: the claim, which also reads the newest
stored day; the attempt with the call's audit row, right after the token is granted; and the
call's end together with the outcome (upsert + succeed, requeue or fail). Each commit is a round
trip and, on a durable server, a WAL flush.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlmodel import Session

from shared.core.db import autocommit_connection, session_scope
from shared.core.market_calendar import last_completed_trading_day, trading_days
from shared.core.models import Job, JobErrorCode, OutputSize, utcnow
from shared.core.settings import Settings
from shared.domain.audit import finish_call, start_call, withdraw_call
from shared.domain.heartbeat import LeaseTerms, heartbeat
from shared.domain.jobs.lifecycle import claim_job, fail_job, requeue_job, succeed_job
from shared.domain.prices import upsert_prices
from shared.domain.tracking import mark_failed, mark_refreshed
from shared.upstream.errors import (
    AlphaVantageError,
    DailyQuotaExceeded,
    PremiumOutputSize,
    RateLimited,
)
from shared.upstream.factory import Upstream
from shared.upstream.ratelimit import Grant, LimiterUnreachableError

logger = logging.getLogger(__name__)

# Only waits this short may sleep inside a task; anything longer is stored as `not_before`.
MAX_SLEEP_SECONDS = 1.0
# A compact answer holds the last 100 trading days; a longer gap needs the full history.
COMPACT_TRADING_DAYS = 100
# A parked symbol (invalid, delisted) is tried again this much later, not every minute.
PARKED_RETRY = timedelta(days=7)
# Without a day window to exhaust, a daily-quota reply pauses the fleet this long.
DAILY_QUOTA_FALLBACK_COOLDOWN = timedelta(hours=1)


class Outcome(StrEnum):
    """What one run did with the job."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUEUED = "requeued"
    NOT_CLAIMED = "not_claimed"


@dataclass(frozen=True, slots=True)
class RunResult:
    """The outcome of one run, with the job as it was left and the wait before the next try."""

    outcome: Outcome
    job: Job | None = None
    retry_in: float | None = None


@dataclass(frozen=True, slots=True)
class RunPolicy:
    """Limits of a run, from the settings."""

    max_attempts: int
    lease: LeaseTerms
    full_history: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> RunPolicy:
        """The policy the settings describe."""
        return cls(
            max_attempts=settings.job_max_attempts,
            lease=LeaseTerms(
                window=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
                hard_bound=timedelta(seconds=settings.job_lease_seconds),
            ),
            full_history=settings.alphavantage_full_history,
        )


def run_job(
    job_id: uuid.UUID,
    *,
    upstream: Upstream,
    policy: RunPolicy,
    worker: str,
    clock: Callable[[], datetime] = utcnow,
) -> RunResult:
    """Run the job if it is due and nobody else holds it; every exit leaves a truthful row."""
    with autocommit_connection() as connection:
        claim = claim_job(connection, job_id, worker=worker, lease=policy.lease.first_lease)
    if claim is None:
        return RunResult(Outcome.NOT_CLAIMED)
    assert claim.job.started_at is not None  # set by the claim
    with heartbeat(job_id, worker=worker, claimed_at=claim.job.started_at, terms=policy.lease):
        return _Run(claim.job, claim.stored_through, upstream, policy, worker, clock).execute()


@dataclass(frozen=True, slots=True)
class _SentCall:
    """An audited call on its way: its audit row, when it was sent (Redis' clock), and the
    monotonic start of its duration."""

    call_id: int
    sent_at: float
    started: float


@dataclass(frozen=True, slots=True)
class _CallEnd:
    """How an audited call ended, written with the transaction that records the job's outcome."""

    call_id: int
    sent_at: float
    outcome: str
    duration_ms: int


class _Run:
    def __init__(
        self,
        job: Job,
        stored_through: date | None,
        upstream: Upstream,
        policy: RunPolicy,
        worker: str,
        clock: Callable[[], datetime],
    ) -> None:
        self.job = job
        self.stored_through = stored_through
        self.upstream = upstream
        self.policy = policy
        self.worker = worker
        self.clock = clock
        self._call_end: _CallEnd | None = None
        self._unsent_call: int | None = None

    def execute(self) -> RunResult:
        if self.job.attempts >= self.policy.max_attempts:
            # Only a crash loop gets here: every earlier attempt died before finishing.
            return self._fail(
                JobErrorCode.UPSTREAM_ERROR,
                f"Gave up after {self.job.attempts} attempts that never finished.",
            )
        stored_through = self.stored_through
        target = last_completed_trading_day(self.clock())
        if self.job.outputsize != OutputSize.FULL and stored_through and stored_through >= target:
            return self._succeed(
                0,
                f"Already current: stored prices reach {stored_through.isoformat()}, the last "
                "completed trading day; no AlphaVantage call was made.",
                upsert=None,
            )
        try:
            return self._call_and_store(stored_through, target)
        except LimiterUnreachableError as exc:
            return self._limiter_unreachable(exc)

    def _call_and_store(self, stored_through: date | None, target: date) -> RunResult:
        outputsize = self._choose_outputsize(stored_through, target)
        while True:
            grant = self._take_token()
            if not grant.granted:
                return self._requeue(
                    grant.retry_after, "Waiting for AlphaVantage budget (fleet-wide rate limit)."
                )
            with autocommit_connection() as connection:
                call_id = start_call(
                    connection,
                    job_id=self.job.id,
                    worker=self.worker,
                    called_at=grant.at,
                    outputsize=outputsize,
                )
            if call_id is None:
                # Our lease ran out while we waited for the token, and another worker claimed
                # the job: it makes the call, and this token goes unused.
                return RunResult(Outcome.NOT_CLAIMED)
            attempts = self.job.attempts + 1
            self.job.attempts = attempts
            self._unsent_call = call_id  # until the token is confirmed
            sent_at = self.upstream.limiter.confirm(grant)
            if sent_at is None:
                return self._requeue(
                    0.0,
                    "The budget token lapsed before the call was sent (the worker stalled); "
                    "no call was made.",
                    refund_attempt=True,
                )
            self._unsent_call = None
            call = _SentCall(call_id, sent_at, started=time.monotonic())
            try:
                series = self.upstream.client.fetch_daily(self.job.symbol, outputsize)
            except PremiumOutputSize as exc:
                self._audit(call, exc)
                with session_scope() as session:
                    self._record_call_end(session)
                self.upstream.full_history.remember_unavailable()
                logger.info("outputsize=full is premium-only for this key; using compact")
                outputsize = OutputSize.COMPACT
                continue
            except RateLimited as exc:
                # Stop the fleet first: every millisecond before the cooldown is set lets
                # another worker spend a call that will be refused too.
                wait = self._cool_down(exc)
                self._audit(call, exc)
                return self._requeue(
                    wait,
                    f"AlphaVantage throttled the key ({exc.message}); the fleet is cooling down.",
                    refund_attempt=True,
                )
            except AlphaVantageError as exc:
                self._audit(call, exc)
                if not exc.retryable or attempts >= self.policy.max_attempts:
                    return self._fail(exc.code, exc.message)
                return self._requeue(
                    min(2.0 ** (attempts - 1), 60.0),
                    f"Attempt {attempts} failed ({exc.message}); retrying.",
                )
            self._audit(call, None)
            return self._succeed(
                None,
                f"Fetched {len(series.bars)} days ({outputsize}) from AlphaVantage.",
                upsert=series,
            )

    def _choose_outputsize(self, stored_through: date | None, target: date) -> OutputSize:
        wants_full = self.job.outputsize == OutputSize.FULL or (
            self.job.outputsize is None
            and self.policy.full_history
            and (stored_through is None or not _compact_covers(stored_through, target))
        )
        if wants_full and not self.upstream.full_history.unavailable():
            return OutputSize.FULL
        return OutputSize.COMPACT

    def _take_token(self) -> Grant:
        """A granted token, or the refusal when the budget frees one too late to sleep for."""
        while True:
            grant = self.upstream.limiter.acquire(cost_id=str(self.job.id))
            if grant.granted or grant.retry_after > MAX_SLEEP_SECONDS:
                return grant
            time.sleep(grant.retry_after)

    def _limiter_unreachable(self, exc: LimiterUnreachableError) -> RunResult:
        # An outage to expect (a Redis restart): one line, not a task traceback. The job goes
        # back to PostgreSQL, due at once; the dispatcher sends it when the budget is readable.
        # An attempt whose call was not sent is given back, with its audit row.
        logger.warning("job %s: the rate limiter is unreachable (%s); requeued", self.job.id, exc)
        return self._requeue(
            0.0,
            "Waiting for the rate limiter: its Redis did not answer.",
            refund_attempt=self._unsent_call is not None,
        )

    def _cool_down(self, exc: RateLimited) -> float:
        limiter = self.upstream.limiter
        if isinstance(exc, DailyQuotaExceeded):
            day_windows = [w for w in limiter.windows if w.seconds >= 86_400]
            if day_windows:
                # The window shows as used up (the budget metrics say so), and the cooldown
                # carries the reason; both end when the day's oldest call leaves the window.
                seconds = limiter.exhaust(day_windows[0], reason=exc.message)
            else:
                seconds = DAILY_QUOTA_FALLBACK_COOLDOWN.total_seconds()
        else:
            seconds = exc.retry_after or 60.0
        if seconds > 0:
            limiter.cooldown(seconds, reason=exc.message)
        return seconds

    def _audit(self, call: _SentCall, exc: AlphaVantageError | None) -> None:
        self._call_end = _CallEnd(
            call.call_id,
            sent_at=call.sent_at,
            outcome="ok" if exc is None else _outcome_name(exc),
            duration_ms=round((time.monotonic() - call.started) * 1000),
        )

    def _record_call_end(self, session: Session) -> None:
        """Write the pending call's end into this transaction (if the worker dies first, the
        call stays `pending` in the audit and still counts in the budget)."""
        if self._unsent_call is not None:
            withdraw_call(session, self._unsent_call)
            self._unsent_call = None
        if self._call_end is not None:
            end, self._call_end = self._call_end, None
            finish_call(
                session,
                end.call_id,
                sent_at=end.sent_at,
                outcome=end.outcome,
                duration_ms=end.duration_ms,
            )

    def _succeed(self, rows: int | None, detail: str, *, upsert: Any) -> RunResult:
        with session_scope() as session:
            written = (
                rows
                if upsert is None
                else upsert_prices(session, self.job.symbol, upsert.bars).written
            )
            job = succeed_job(
                session, self.job.id, worker=self.worker, rows_written=written or 0, detail=detail
            )
            if job is None:
                session.rollback()  # another worker holds the job now and writes its own data
                self._record_call_end(session)
                logger.warning("job %s: another worker holds it now; result dropped", self.job.id)
                return RunResult(Outcome.NOT_CLAIMED)
            mark_refreshed(session, self.job.symbol)
            self._record_call_end(session)
        logger.info("job %s %s: %s rows written", job.id, job.symbol, written)
        return RunResult(Outcome.SUCCEEDED, job)

    def _fail(self, code: JobErrorCode, message: str) -> RunResult:
        with session_scope() as session:
            self._record_call_end(session)
            job = fail_job(session, self.job.id, worker=self.worker, code=code, message=message)
            if job is None:
                return RunResult(Outcome.NOT_CLAIMED)
            if code is JobErrorCode.INVALID_SYMBOL:
                mark_failed(
                    session,
                    self.job.symbol,
                    code=code,
                    message=message,
                    retry_at=self.clock() + PARKED_RETRY,
                )
        logger.warning("job %s %s failed: %s", job.id, job.symbol, code)
        return RunResult(Outcome.FAILED, job)

    def _requeue(self, wait: float, detail: str, *, refund_attempt: bool = False) -> RunResult:
        with session_scope() as session:
            self._record_call_end(session)
            job = requeue_job(
                session,
                self.job.id,
                worker=self.worker,
                not_before=self.clock() + timedelta(seconds=wait),
                detail=detail,
                refund_attempt=refund_attempt,
            )
        if job is None:
            return RunResult(Outcome.NOT_CLAIMED)
        return RunResult(Outcome.REQUEUED, job, retry_in=wait)


def _compact_covers(stored_through: date, target: date) -> bool:
    """Whether a compact answer (the last 100 trading days to `target`) closes the gap."""
    if (target - stored_through).days <= COMPACT_TRADING_DAYS:
        return True  # fewer calendar days than that, so fewer trading days too
    missing = trading_days(stored_through + timedelta(days=1), target)
    return len(missing) <= COMPACT_TRADING_DAYS


def _outcome_name(exc: AlphaVantageError) -> str:
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")
