"""US (NYSE) trading calendar: which days trade and when a day's daily bar is complete.

Holidays (including one-off closures such as 2001-09-11 or 2012's Hurricane Sandy) come from the
``holidays`` library's NYSE calendar. Early closes (13:00 on some half days) are treated as normal
16:00 closes: that only makes us wait a few hours longer before a half day counts as complete.
"""

import functools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# Imported directly (not through holidays.financial_holidays, which loads every country's
# calendar on first use): workers import this before forking, so children start warm.
from holidays.financial.ny_stock_exchange import NewYorkStockExchange

NEW_YORK = ZoneInfo("America/New_York")
MARKET_CLOSE = time(16, 0)
# AlphaVantage publishes the daily bar some minutes after the close; asking earlier returns the
# previous day (or a partial bar), so a day only counts once this margin has passed.
DEFAULT_SETTLE = timedelta(minutes=30)


@functools.lru_cache(maxsize=256)
def _holidays_in(year: int) -> frozenset[date]:
    return frozenset(NewYorkStockExchange(years=year).keys())  # type: ignore[no-untyped-call]


def is_trading_day(day: date) -> bool:
    """Whether the NYSE trades on ``day`` (a weekday that is not an exchange holiday)."""
    return day.weekday() < 5 and day not in _holidays_in(day.year)


def trading_days(start: date, end: date) -> list[date]:
    """Trading days from ``start`` to ``end``, both inclusive, oldest first."""
    days: list[date] = []
    day = start
    while day <= end:
        if is_trading_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def previous_trading_day(day: date) -> date:
    """The last trading day strictly before ``day``."""
    candidate = day - timedelta(days=1)
    while not is_trading_day(candidate):
        candidate -= timedelta(days=1)
    return candidate


def market_close_at(day: date) -> datetime:
    """The regular 16:00 New York close of ``day`` as a timezone-aware datetime."""
    return datetime.combine(day, MARKET_CLOSE, tzinfo=NEW_YORK)


def last_completed_trading_day(now: datetime, settle: timedelta = DEFAULT_SETTLE) -> date:
    """The newest trading day whose daily bar is final at ``now`` (close plus ``settle`` passed)."""
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(NEW_YORK).date()
    if is_trading_day(today) and now >= market_close_at(today) + settle:
        return today
    return previous_trading_day(today)
