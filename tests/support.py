"""Small builders shared by the tests."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import redis
from sqlalchemy import text
from sqlmodel import Session

from shared.upstream.parser import DailyBar

T = TypeVar("T")

# Distinctive fake secrets: tests search logs, rows, responses and messages for them.
FAKE_API_KEY = "SECRETKEY-TEST-7f3a9c"
API_TOKEN = "TOKEN-TEST-51c2e8"

# Recorded AlphaVantage answers (their sources: SOURCES.md beside them).
ALPHAVANTAGE_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "alphavantage"


Bar = DailyBar


def bar(day: str, open_: str, close: str, volume: int = 1000) -> Bar:
    """A bar whose high/low bracket open and close."""
    o, c = Decimal(open_), Decimal(close)
    return Bar(dt.date.fromisoformat(day), o, max(o, c), min(o, c), c, volume)


def history(days: int, start: dt.date = dt.date(2000, 1, 3)) -> list[Bar]:
    """`days` consecutive weekday bars with distinct prices."""
    bars: list[Bar] = []
    day = start
    while len(bars) < days:
        if day.weekday() < 5:
            price = Decimal(100 + len(bars) % 50) + Decimal(len(bars) % 97) / 100
            bars.append(
                Bar(day, price, price + 1, price - 1, price + Decimal("0.5"), 1000 + len(bars))
            )
        day += dt.timedelta(days=1)
    return bars


def wait_until(
    predicate: Callable[[], T | None], *, timeout: float, interval: float = 0.2, what: str = ""
) -> T:
    """Poll until `predicate` returns something truthy, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)


def redis_now(client: redis.Redis[Any]) -> float:
    """Redis' clock, which decides the budget."""
    seconds, micros = client.time()
    return float(seconds) + float(micros) / 1_000_000


def wait_for_redis_time(client: redis.Redis[Any], instant: float) -> None:
    """Poll until Redis' clock has passed `instant`."""
    while redis_now(client) <= instant:
        time.sleep(0.02)


def max_in_sliding_interval(times: Sequence[float], seconds: float) -> int:
    """Most events in one half-open interval (t - seconds, t], over every event time t.

    Times are compared in whole microseconds, so float rounding cannot move an event across
    an interval's edge.
    """
    stamps = sorted(round(t * 1_000_000) for t in times)
    length = round(seconds * 1_000_000)
    most = first = 0
    for last, stamp in enumerate(stamps):
        while stamps[first] <= stamp - length:
            first += 1
        most = max(most, last - first + 1)
    return most


def insert_aged_job(
    session: Session, status: str, *, created_days: float, finished_days: float | None
) -> str:
    """A job row created (and finished) that many days ago by PostgreSQL's clock; its id."""
    job_id = str(uuid.uuid4())
    session.execute(
        text(
            "INSERT INTO jobs (id, symbol, status, source, attempts, created_at, finished_at)"
            " VALUES (:id, :symbol, :status, 'api', 1, now() - make_interval(secs => :created),"
            " now() - make_interval(secs => :finished))"
        ),
        {
            "id": job_id,
            "symbol": f"R{job_id[:6]}".upper(),
            "status": status,
            "created": created_days * 86400,
            "finished": None if finished_days is None else finished_days * 86400,
        },
    )
    return job_id


def insert_aged_call(session: Session, *, seconds_ago: float, outcome: str = "ok") -> int:
    """An audited call made that long ago by PostgreSQL's clock; its id."""
    call_id: int = session.execute(
        text(
            "INSERT INTO api_calls (called_at, symbol, outputsize, outcome)"
            " VALUES (now() - make_interval(secs => :ago), 'IBM', 'compact', :outcome)"
            " RETURNING id"
        ),
        {"ago": seconds_ago, "outcome": outcome},
    ).scalar_one()
    return call_id
