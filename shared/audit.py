"""The audit log of AlphaVantage calls: proof of the budget's use, and the limiter's backup."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlmodel import Session

from shared.db import session_scope
from shared.models import ApiCall


def record_call(
    *,
    called_at: float,
    symbol: str,
    outputsize: str,
    job_id: uuid.UUID | None,
    outcome: str,
    duration_ms: int | None,
) -> None:
    """Store one call in its own transaction, so it is kept whatever happens to the job."""
    with session_scope() as session:
        session.add(
            ApiCall(
                called_at=datetime.fromtimestamp(called_at, UTC),
                symbol=symbol,
                outputsize=outputsize,
                job_id=job_id,
                outcome=outcome,
                duration_ms=duration_ms,
            )
        )


def recent_call_times(session: Session, *, within: timedelta) -> list[float]:
    """Unix times of the calls made in the last `within` (to rebuild a lost rate limiter)."""
    rows = session.execute(
        text(
            "SELECT extract(epoch FROM called_at) FROM api_calls WHERE called_at > now() - :within"
        ),
        {"within": within},
    ).scalars()
    return [float(value) for value in rows]


def calls_by_outcome(session: Session) -> Sequence[tuple[str, int]]:
    """How many calls ended in each outcome, ever."""
    rows = session.execute(
        text("SELECT outcome, count(*) FROM api_calls GROUP BY outcome ORDER BY outcome")
    ).all()
    return [(outcome, int(count)) for outcome, count in rows]
