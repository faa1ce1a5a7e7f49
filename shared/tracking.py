"""Tracked symbols: what beat keeps current, and what is stored for each."""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session

from shared.db import session_scope
from shared.jobs import create_job
from shared.market_calendar import last_completed_trading_day

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Coverage:
    """A tracked symbol with what is stored for it."""

    symbol: str
    tracked_since: datetime
    first_date: dt.date | None
    last_date: dt.date | None
    rows: int
    last_refreshed_at: datetime | None
    failure_code: str | None
    failure_message: str | None
    retry_at: datetime | None


_COVERAGE_SQL = """
    SELECT t.symbol, t.created_at, s.first_date, s.last_date, coalesce(s.rows, 0),
           t.last_refreshed_at, t.failure_code, t.failure_message, t.retry_at
    FROM tracked_symbols t
    LEFT JOIN LATERAL (
        SELECT min(date) AS first_date, max(date) AS last_date, count(*) AS rows
        FROM financial_data f WHERE f.symbol = t.symbol
    ) s ON true
"""


def list_tracked(session: Session, *, limit: int, offset: int) -> tuple[list[Coverage], int]:
    """One page of tracked symbols in alphabetical order, and how many there are."""
    count = int(session.execute(text("SELECT count(*) FROM tracked_symbols")).scalar_one())
    rows = session.execute(
        text(_COVERAGE_SQL + " ORDER BY t.symbol LIMIT :limit OFFSET :offset"),
        {"limit": limit, "offset": offset},
    ).all()
    return [Coverage(*row) for row in rows], count


def get_tracked(session: Session, symbol: str) -> Coverage | None:
    """One tracked symbol's coverage, or None when it is not tracked."""
    row = session.execute(
        text(_COVERAGE_SQL + " WHERE t.symbol = :symbol"), {"symbol": symbol}
    ).one_or_none()
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


def symbols_due(session: Session, *, target: dt.date, min_interval: dt.timedelta) -> Sequence[str]:
    """Tracked symbols whose stored data ends before `target` and that may be fetched again now.

    A symbol with a job created less than `min_interval` ago waits (in flight, or AlphaVantage
    has not published the day yet), and a parked symbol waits for its `retry_at`.
    """
    rows = session.execute(
        text(
            """
            SELECT t.symbol FROM tracked_symbols t
            WHERE (t.retry_at IS NULL OR t.retry_at <= now())
              AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.symbol = t.symbol
                              AND j.created_at > now() - :min_interval)
              AND coalesce((SELECT max(date) FROM financial_data f WHERE f.symbol = t.symbol),
                           DATE '0001-01-01') < :target
            ORDER BY t.symbol
            """
        ),
        {"target": target, "min_interval": min_interval},
    ).scalars()
    return list(rows)


def enqueue_due_refreshes(*, now: datetime, min_interval: dt.timedelta) -> list[uuid.UUID]:
    """Create refresh jobs for tracked symbols behind the last completed trading day."""
    target = last_completed_trading_day(now)
    created: list[uuid.UUID] = []
    with session_scope() as session:
        for symbol in symbols_due(session, target=target, min_interval=min_interval):
            result = create_job(session, symbol, source="beat")
            if result.created:
                created.append(result.job.id)
    if created:
        logger.info("created %d refresh jobs for data before %s", len(created), target)
    return created
