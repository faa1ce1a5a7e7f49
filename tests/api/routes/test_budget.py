"""GET /api/budget against the fleet's real limiter in Redis and the audit in PostgreSQL."""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlmodel import Session

from api.redis_clients import get_limiter, get_redis
from shared.core.settings import get_settings
from shared.domain.audit import calls_today_by_outcome
from shared.domain.jobs.records import create_job
from shared.domain.refresh import RunPolicy, run_job
from shared.upstream.client import AlphaVantageClient
from shared.upstream.factory import FullHistoryMemory, Upstream
from shared.upstream.ratelimit import RedisRateLimiter
from stockpile.sandbox.server import SandboxHandle
from tests.support import API_TOKEN, FAKE_API_KEY

LIMITS = "50/second,500/day"


@pytest.fixture
def limiter(monkeypatch: pytest.MonkeyPatch, sandbox: SandboxHandle) -> Iterator[RedisRateLimiter]:
    """The API's own limiter (same process), configured with a second and a day window."""
    monkeypatch.setenv("ALPHAVANTAGE_RATE_LIMITS", LIMITS)
    get_settings.cache_clear()
    get_limiter.cache_clear()
    yield get_limiter()
    monkeypatch.undo()
    get_settings.cache_clear()
    get_limiter.cache_clear()


def iso(seconds: float) -> str:
    """How the API writes an instant it rounds up to the second."""
    return datetime.fromtimestamp(math.ceil(seconds), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit(session: Session, outcome: str, called_at: str) -> None:
    session.execute(
        text(
            "INSERT INTO api_calls (called_at, symbol, outputsize, outcome)"
            f" VALUES ({called_at}, 'IBM', 'compact', :outcome)"
        ),
        {"outcome": outcome},
    )


START_OF_UTC_DAY = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"


def test_budget_agrees_with_the_limiter_and_the_audit(
    api: httpx.Client, session: Session, limiter: RedisRateLimiter
) -> None:
    for _ in range(3):
        assert limiter.acquire().granted
    audit(session, "ok", "now()")
    audit(session, "ok", START_OF_UTC_DAY)  # the first instant of the day counts
    audit(session, "throttled", "now()")
    audit(session, "pending", "now()")
    audit(session, "ok", f"{START_OF_UTC_DAY} - interval '1 microsecond'")  # yesterday
    session.commit()

    before = limiter.status()
    response = api.get("/api/budget")
    after = limiter.status()
    assert response.status_code == 200
    body = response.json()
    assert body["info"] == {"error": ""}
    data = body["data"]
    assert data["cooldown"] is None
    assert data["calls_today"] == {"ok": 2, "pending": 1, "throttled": 1}
    assert data["calls_today"] == calls_today_by_outcome(session)
    second, day = data["windows"]
    assert (second["limit"], second["seconds"]) == (50, 1)
    assert before.windows[0].used >= second["used"] >= after.windows[0].used
    assert day == {"limit": 500, "seconds": 86400, "used": 3, "next_free_at": None}
    assert second["next_free_at"] is None
    assert FAKE_API_KEY not in response.text
    assert API_TOKEN not in response.text


def test_budget_agrees_with_the_limiter_and_the_audit_after_jobs_called_alphavantage(
    api: httpx.Client, session: Session, limiter: RedisRateLimiter, sandbox: SandboxHandle
) -> None:
    """Three jobs run as a worker runs them, through this limiter, against the sandbox."""
    sandbox.script_faults(["invalid_symbol"], symbol="NOPE")
    upstream = Upstream(
        client=AlphaVantageClient(
            base_url=sandbox.base_url, api_key=SecretStr(FAKE_API_KEY), timeout=30
        ),
        limiter=limiter,
        full_history=FullHistoryMemory(get_redis()),
    )
    policy = RunPolicy.from_settings(get_settings())
    try:
        for symbol in ("IBM", "MSFT", "NOPE"):
            job = create_job(session, symbol).job
            session.commit()
            run_job(job.id, upstream=upstream, policy=policy, worker="test")
    finally:
        upstream.close()
    assert [call.outcome for call in sandbox.stats().calls] == ["ok", "ok", "invalid_symbol"]

    data = api.get("/api/budget").json()["data"]
    audited = session.execute(text("SELECT outcome, count(*) FROM api_calls GROUP BY 1")).all()
    assert data["calls_today"] == dict(audited) == {"ok": 2, "invalid_symbol": 1}
    day = data["windows"][1]
    assert day == {"limit": 500, "seconds": 86400, "used": 3, "next_free_at": None}
    assert limiter.status().windows[1].used == 3


def test_budget_shows_when_an_exhausted_window_frees_and_the_cooldown(
    api: httpx.Client, session: Session, limiter: RedisRateLimiter
) -> None:
    day_window = limiter.windows[1]
    limiter.acquire()
    limiter.exhaust(day_window, "upstream said the day is used up")
    limiter.cooldown(120, "AlphaVantage asked us to slow down")
    status = limiter.status()
    data = api.get("/api/budget").json()["data"]
    day = data["windows"][1]
    assert day["used"] == 500
    # The day window frees when its oldest call leaves it: the same instant whenever asked.
    assert day["next_free_at"] == iso(status.at + status.windows[1].retry_after)
    assert data["cooldown"] == {
        "until": iso(status.at + status.cooldown_remaining),
        "reason": "AlphaVantage asked us to slow down",
    }
    assert not limiter.acquire().granted


def test_budget_is_in_the_openapi_document(api: httpx.Client) -> None:
    schema = api.get("/openapi.json").json()
    operation = schema["paths"]["/api/budget"]["get"]
    assert set(operation["responses"]) == {"200", "503"}
    budget = schema["components"]["schemas"]["Budget"]
    assert set(budget["properties"]) == {"windows", "cooldown", "calls_today"}


def test_budget_answers_503_while_redis_is_unreachable(
    api: httpx.Client, monkeypatch: pytest.MonkeyPatch, session: Session
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:9/0")  # discard port: nothing listens
    for cached in (get_settings, get_redis, get_limiter):
        cached.cache_clear()
    try:
        response = api.get("/api/budget")
    finally:
        monkeypatch.undo()
        for cached in (get_settings, get_redis, get_limiter):
            cached.cache_clear()
    assert response.status_code == 503
    assert response.json() == {
        "data": None,
        "info": {"error": "Redis is unavailable; try again shortly."},
    }
