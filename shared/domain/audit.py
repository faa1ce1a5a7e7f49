"""The audit log of AlphaVantage calls: proof of the budget's use, and the limiter's backup."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import (
    CTE,
    Connection,
    DateTime,
    Interval,
    String,
    bindparam,
    delete,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlmodel import Session

from shared.core.batches import deleted_batch
from shared.core.db import session_scope
from shared.core.models import ApiCall, OutputSize
from shared.domain.jobs.lifecycle import ATTEMPT

# The outcome of a call that was made but whose answer was never recorded (its worker died).
PENDING = "pending"


_API_CALLS = ApiCall.metadata.tables["api_calls"]


# Statements every job runs are built once: building one cost as much CPU as executing it.
# The job's attempt is counted by the jobs package's CTE, and only if the worker still holds it.
_START_CALL = (
    insert(_API_CALLS)
    .from_select(
        ["called_at", "symbol", "outputsize", "job_id", "outcome"],
        select(
            bindparam("called_at", type_=DateTime(timezone=True)),
            ATTEMPT.c.symbol,
            bindparam("call_outputsize", type_=String),
            ATTEMPT.c.id,
            literal(PENDING),
        ),
    )
    .returning(_API_CALLS.c.id)
)


def start_call(
    connection: Connection,
    *,
    job_id: uuid.UUID,
    worker: str,
    called_at: float,
    outputsize: OutputSize,
) -> int | None:
    """Count an attempt of the job and record its call as about to be made, in one statement.

    `called_at` is the token's grant (Redis' clock); `finish_call` moves it to the moment the
    call was sent. Returns the call's id, or None (nothing written) when `worker` no longer
    holds the job. Counted before the call is made, so a call whose worker dies still counts
    against the attempts and the budget.
    """
    call_id = connection.execute(
        _START_CALL,
        {
            "job_id": job_id,
            "holder": worker,
            "called_at": datetime.fromtimestamp(called_at, UTC),
            "call_outputsize": outputsize,
        },
    ).scalar_one_or_none()
    return None if call_id is None else int(call_id)


_FINISH_CALL = (
    update(_API_CALLS)
    .where(_API_CALLS.c.id == bindparam("call_id"))
    .values(
        called_at=bindparam("sent_at", type_=DateTime(timezone=True)),
        outcome=bindparam("call_outcome"),
        duration_ms=bindparam("duration"),
    )
)
_WITHDRAW_CALL = delete(_API_CALLS).where(_API_CALLS.c.id == bindparam("call_id"))


def finish_call(
    session: Session, call_id: int, *, sent_at: float, outcome: str, duration_ms: int
) -> None:
    """Record when a call was sent and how it ended; the caller commits (a row left `pending`
    still counts)."""
    session.connection().execute(
        _FINISH_CALL,
        {
            "call_id": call_id,
            "sent_at": datetime.fromtimestamp(sent_at, UTC),
            "call_outcome": outcome,
            "duration": duration_ms,
        },
    )


def withdraw_call(session: Session, call_id: int) -> None:
    """Forget a call that was started but never sent (its token lapsed); the caller commits."""
    session.connection().execute(_WITHDRAW_CALL, {"call_id": call_id})


def recent_call_times(session: Session, *, within: timedelta) -> list[float]:
    """Unix times of the calls made in the last `within` (to rebuild a lost rate limiter)."""
    rows = session.execute(
        text(
            "SELECT extract(epoch FROM called_at) FROM api_calls WHERE called_at > now() - :within"
        ),
        {"within": within},
    ).scalars()
    return [float(value) for value in rows]


def audited_call_times(within: timedelta) -> list[float]:
    """`recent_call_times` in a session of its own: the rate limiter's history."""
    with session_scope() as session:
        return recent_call_times(session, within=within)


def calls_today_by_outcome(session: Session) -> dict[str, int]:
    """How many calls were made since 00:00 UTC today (PostgreSQL's clock), by outcome."""
    rows = session.execute(
        text(
            "SELECT outcome, count(*) FROM api_calls"
            " WHERE called_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
            " GROUP BY outcome ORDER BY outcome"
        )
    ).all()
    return {outcome: int(count) for outcome, count in rows}


def old_calls_deleted() -> CTE:
    """The CTE `gone`: deletes up to :batch audited calls made more than :keep ago, returning
    their outcomes as `key`. Oldest first (ix_api_calls_called_at)."""
    return deleted_batch(
        _API_CALLS,
        _API_CALLS.c.called_at < func.now() - bindparam("keep", type_=Interval),
        oldest_first=_API_CALLS.c.called_at,
        key=_API_CALLS.c.outcome,
    )
