"""Tracked symbols: what beat keeps current, what is stored for each, and when each is due."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, literal, select, text
from sqlmodel import Session

from shared.core.db import session_scope
from shared.core.market_calendar import DEFAULT_SETTLE, last_completed_trading_day, market_close_at
from shared.core.models import FinancialData, TrackedSymbol
from shared.domain.jobs.records import create_job, in_flight_for, jobs_by_symbol_since

logger = logging.getLogger(__name__)

# While a symbol's data still lacks the target day (AlphaVantage late, trading halted), each
# further try waits twice as long as the one before, from `min_interval` up to this cap, so one
# lagging symbol cannot spend a free key's daily budget.
MAX_RETRY_INTERVAL = timedelta(hours=6)

# Names the advisory lock of enqueue_due_refreshes; any bigint no other code locks on.
ENQUEUE_LOCK_KEY = 0x5370_6B5F_4265_6174  # "Spk_Beat"


@dataclass(frozen=True, slots=True)
class Coverage:
    """A tracked symbol with what is stored for it and its parked failure, if any."""

    symbol: str
    tracked_since: datetime
    first_date: dt.date | None
    last_date: dt.date | None
    rows: int
    last_refreshed_at: datetime | None
    failure_code: str | None
    failure_message: str | None
    failed_at: datetime | None
    retry_at: datetime | None


@dataclass(frozen=True, slots=True)
class TrackResult:
    """What `start_tracking` changed, and whether the symbol now needs a refresh right away."""

    created: bool
    resumed: bool
    needs_refresh: bool


# `{tracked}` is the tracked symbols wanted (one page, or one symbol): the coverage is computed
# for those rows only, never for the rows a page skips. First and last day are each one probe of
# the primary key at an end of the symbol's range; the row count comes from the trigger-kept
# financial_data_counts (migration 0003), not from counting the symbol's rows.
_COVERAGE_SQL = """
    SELECT t.symbol, t.created_at,
           (SELECT min(f.date) FROM financial_data f WHERE f.symbol = t.symbol),
           (SELECT max(f.date) FROM financial_data f WHERE f.symbol = t.symbol),
           coalesce((SELECT c.rows FROM financial_data_counts c WHERE c.symbol = t.symbol), 0),
           t.last_refreshed_at, t.failure_code, t.failure_message, t.failed_at, t.retry_at
    FROM ({tracked}) t
    ORDER BY t.symbol
"""


def list_tracked(session: Session, *, limit: int, offset: int) -> tuple[list[Coverage], int]:
    """One page of tracked symbols in alphabetical order, and how many there are."""
    count = int(session.execute(text("SELECT count(*) FROM tracked_symbols")).scalar_one())
    page = "SELECT * FROM tracked_symbols ORDER BY symbol LIMIT :limit OFFSET :offset"
    rows = session.execute(
        text(_COVERAGE_SQL.format(tracked=page)), {"limit": limit, "offset": offset}
    ).all()
    return [Coverage(*row) for row in rows], count


def get_tracked(session: Session, symbol: str) -> Coverage | None:
    """One tracked symbol's coverage, or None when it is not tracked."""
    one = "SELECT * FROM tracked_symbols WHERE symbol = :symbol"
    row = session.execute(text(_COVERAGE_SQL.format(tracked=one)), {"symbol": symbol}).one_or_none()
    return Coverage(*row) if row is not None else None


def track(session: Session, symbol: str) -> bool:
    """Start tracking `symbol`; False when it already was."""
    inserted = session.execute(
        text(
            "INSERT INTO tracked_symbols (symbol) VALUES (:symbol)"
            " ON CONFLICT (symbol) DO NOTHING RETURNING symbol"
        ),
        {"symbol": symbol},
    ).scalar_one_or_none()
    return inserted is not None


def untrack(session: Session, symbol: str) -> bool:
    """Stop tracking `symbol` (its stored prices stay); False when it was not tracked."""
    deleted = session.execute(
        text("DELETE FROM tracked_symbols WHERE symbol = :symbol RETURNING symbol"),
        {"symbol": symbol},
    ).scalar_one_or_none()
    return deleted is not None


def unpark(session: Session, symbol: str) -> bool:
    """Clear a parked failure so the symbol is due again; False when it was not parked."""
    cleared = session.execute(
        text(
            "UPDATE tracked_symbols SET failure_code = NULL, failure_message = NULL,"
            " failed_at = NULL, retry_at = NULL"
            " WHERE symbol = :symbol AND (failure_code IS NOT NULL OR retry_at IS NOT NULL)"
            " RETURNING symbol"
        ),
        {"symbol": symbol},
    ).scalar_one_or_none()
    return cleared is not None


def start_tracking(session: Session, symbol: str, *, now: datetime) -> TrackResult:
    """Track `symbol` (or resume a parked one); the caller commits, with any refresh job."""
    created = track(session, symbol)
    resumed = not created and unpark(session, symbol)
    stored_through = latest_stored_date(session, symbol)
    lagging = stored_through is None or stored_through < last_completed_trading_day(now)
    return TrackResult(
        created=created, resumed=resumed, needs_refresh=(created or resumed) and lagging
    )


def mark_refreshed(session: Session, symbol: str) -> None:
    """Record a successful refresh and clear any parked failure."""
    session.execute(
        text(
            "UPDATE tracked_symbols SET last_refreshed_at = now(), failure_code = NULL,"
            " failure_message = NULL, failed_at = NULL, retry_at = NULL WHERE symbol = :symbol"
        ),
        {"symbol": symbol},
    )


def mark_failed(
    session: Session, symbol: str, *, code: str, message: str, retry_at: datetime
) -> None:
    """Park a tracked symbol that failed permanently until `retry_at`."""
    session.execute(
        text(
            "UPDATE tracked_symbols SET failure_code = :code, failure_message = :message,"
            " failed_at = now(), retry_at = :retry_at WHERE symbol = :symbol"
        ),
        {"symbol": symbol, "code": code, "message": message, "retry_at": retry_at},
    )


def latest_stored_date(session: Session, symbol: str) -> dt.date | None:
    """The newest stored day of `symbol`."""
    value = session.execute(
        text("SELECT max(date) FROM financial_data WHERE symbol = :symbol"), {"symbol": symbol}
    ).scalar_one()
    return value  # type: ignore[no-any-return]


def retry_interval(tries: int, min_interval: timedelta) -> timedelta:
    """How long a lagging symbol waits after its last job, `tries` jobs into the same day."""
    if tries <= 1:
        return min_interval
    cap = max(min_interval, MAX_RETRY_INTERVAL)
    # The exponent is bounded so a long outage cannot overflow timedelta.
    return min(cap, min_interval * (1 << min(tries - 1, 20)))


_TRACKED = TrackedSymbol.metadata.tables["tracked_symbols"]
_PRICES = FinancialData.metadata.tables["financial_data"]

# The in-flight test comes first, as one anti-join against the in-flight jobs in a materialized
# CTE: as plain WHERE conditions on tracked_symbols, the planner probed every symbol's newest
# stored day before the join (10,000 probes, 230 ms with a backlog in flight, when no symbol can
# be due). The last job and the tries come from one range of ix_jobs_created_at (the jobs since
# `:recent_since`, at most a few days' worth), grouped and hash-joined, not from two probes per
# symbol: a symbol whose last job is older than that is due whatever its tries were.
_IDLE = (
    select(_TRACKED.c.symbol)
    .where(
        _TRACKED.c.retry_at.is_(None) | (_TRACKED.c.retry_at <= bindparam("now")),
        ~in_flight_for(_TRACKED.c.symbol),
    )
    .cte("idle")
    .prefix_with("MATERIALIZED")
)
_LAGGING = (
    select(_IDLE.c.symbol)
    .where(
        func.coalesce(
            select(func.max(_PRICES.c.date))
            .where(_PRICES.c.symbol == _IDLE.c.symbol)
            .scalar_subquery(),
            literal(dt.date.min),
        )
        < bindparam("target")
    )
    .cte("lagging")
    .prefix_with("MATERIALIZED")
)
_RECENT = jobs_by_symbol_since(bindparam("recent_since"), bindparam("due_since")).cte("recent")
_CANDIDATES = (
    select(_LAGGING.c.symbol, _RECENT.c.last_job_at, func.coalesce(_RECENT.c.tries, 0))
    .select_from(_LAGGING.outerjoin(_RECENT, _RECENT.c.symbol == _LAGGING.c.symbol))
    .order_by(_LAGGING.c.symbol)
)


def symbols_due(session: Session, *, now: datetime, min_interval: timedelta) -> list[str]:
    """Tracked symbols to refresh at `now` (aware), alphabetical.

    Due: stored data ends before the last trading day completed at `now`, the symbol is not
    parked (or its `retry_at` has come), no job for it is in flight, and its last job is older
    than `retry_interval` of the jobs already created since that day's bar became final.
    """
    target = last_completed_trading_day(now)
    due_since = market_close_at(target) + DEFAULT_SETTLE
    # A job older than the longest retry interval cannot make a symbol wait, so older jobs are
    # not read (their symbol's last_job_at comes back NULL: due).
    recent_since = min(due_since, now - max(min_interval, MAX_RETRY_INTERVAL))
    rows = (
        session.connection()
        .execute(
            _CANDIDATES,
            {"now": now, "target": target, "due_since": due_since, "recent_since": recent_since},
        )
        .all()
    )
    return [
        symbol
        for symbol, last_job_at, tries in rows
        if last_job_at is None or now - last_job_at >= retry_interval(tries, min_interval)
    ]


def enqueue_due_refreshes(*, now: datetime, min_interval: timedelta) -> list[uuid.UUID]:
    """Create refresh jobs (dedupe as for POST /jobs) for the symbols due at `now`.

    A transaction-scoped advisory lock makes overlapping runs (a second beat, a slow tick) take
    turns: a run that finds the lock taken does nothing, since the holder covers the same work,
    and the next run sees the holder's jobs.
    """
    created: list[uuid.UUID] = []
    with session_scope() as session:
        locked = session.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ENQUEUE_LOCK_KEY}
        ).scalar_one()
        if not locked:
            logger.info("another run is enqueueing refreshes; skipping this one")
            return created
        for symbol in symbols_due(session, now=now, min_interval=min_interval):
            result = create_job(session, symbol, source="beat")
            if result.created:
                created.append(result.job.id)
    if created:
        logger.info(
            "created %d refresh jobs for data through %s",
            len(created),
            last_completed_trading_day(now),
        )
    return created
