"""The AlphaVantage budget as the fleet sees it: windows, cooldown and today's calls."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime

import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.errors import ServiceUnavailable
from api.redis_clients import get_limiter
from api.responses import Envelope, error_doc, ok, utc_timestamp
from api.sessions import database_session
from shared.domain.audit import calls_today_by_outcome
from shared.upstream.ratelimit import LimiterStatus

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["budget"])

REDIS_UNAVAILABLE = "Redis is unavailable; try again shortly."


class BudgetWindow(BaseModel):
    """One configured window of ALPHAVANTAGE_RATE_LIMITS."""

    limit: int = Field(description="Calls allowed in any interval of `seconds`")
    seconds: int = Field(description="The window's length")
    used: int = Field(description="Calls made in the last `seconds`, fleet-wide")
    next_free_at: str | None = Field(
        description="When this window next allows a call (UTC, rounded up to the second); "
        "null when it allows one now"
    )


class Cooldown(BaseModel):
    """A fleet-wide pause after the upstream said it throttles us."""

    until: str
    reason: str


class Budget(BaseModel):
    """The budget now; `calls_today` counts audited calls since 00:00 UTC by outcome."""

    windows: list[BudgetWindow]
    cooldown: Cooldown | None
    calls_today: dict[str, int]


def _at(seconds: float) -> str | None:
    # Rounded up: a client that waits until then finds the call allowed.
    return utc_timestamp(datetime.fromtimestamp(math.ceil(seconds), UTC))


def budget_json(status: LimiterStatus, calls_today: dict[str, int]) -> dict[str, object]:
    """The public JSON of the budget (no secret: the limiter holds none)."""
    cooldown = None
    if status.cooldown_remaining > 0:
        cooldown = {
            "until": _at(status.at + status.cooldown_remaining),
            "reason": status.cooldown_reason or "",
        }
    return {
        "windows": [
            {
                "limit": window.window.limit,
                "seconds": window.window.seconds,
                "used": window.used,
                "next_free_at": _at(status.at + window.retry_after)
                if window.retry_after > 0
                else None,
            }
            for window in status.windows
        ],
        "cooldown": cooldown,
        "calls_today": calls_today,
    }


@router.get(
    "/budget",
    response_model=Envelope[Budget],
    responses={503: error_doc("PostgreSQL or Redis is unavailable")},
)
def read_budget() -> JSONResponse:
    """Calls used and allowed in each rate window, any cooldown, and today's calls by outcome."""
    limiter = get_limiter()
    try:
        # After a Redis data loss the windows are re-seeded from the audit log first, as a
        # worker would before its next call; otherwise they would read as unused.
        limiter.ensure_initialized()
        status = limiter.status()
    except redis.RedisError as exc:
        logger.warning("budget: Redis unavailable (%s)", type(exc).__name__)
        raise ServiceUnavailable(REDIS_UNAVAILABLE) from exc
    with database_session() as session:
        calls_today = calls_today_by_outcome(session)
    return ok(budget_json(status, calls_today))
