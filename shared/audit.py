"""The audit log of AlphaVantage calls: proof of the budget's use, and the limiter's backup."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import text, update
from sqlmodel import Session, col

from shared.db import session_scope
from shared.models import ApiCall

# The outcome of a call that was made but whose answer was never recorded (its worker died).
PENDING = "pending"


def start_call(
    session: Session,
    *,
    called_at: float,
    symbol: str,
    outputsize: str,
    job_id: uuid.UUID | None,
) -> int:
    """Record a call about to be made (its token's time, from Redis); returns its id."""
    call = ApiCall(
        called_at=datetime.fromtimestamp(called_at, UTC),
        symbol=symbol,
        outputsize=outputsize,
        job_id=job_id,
        outcome=PENDING,
    )
    session.add(call)
    session.flush()
    assert call.id is not None
    return call.id


def finish_call(call_id: int, *, outcome: str, duration_ms: int) -> None:
    """Record how a call ended, in its own transaction, whatever happens to the job."""
    with session_scope() as session:
        session.execute(
            update(ApiCall)
            .where(col(ApiCall.id) == call_id)
            .values(outcome=outcome, duration_ms=duration_ms)
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
