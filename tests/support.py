"""Small builders shared by the tests."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Bar:
    """A daily bar as the AlphaVantage parser produces it."""

    date: dt.date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


def bar(day: str, open_: str, close: str, volume: int = 1000) -> Bar:
    """A bar whose high/low bracket open and close."""
    o, c = Decimal(open_), Decimal(close)
    return Bar(dt.date.fromisoformat(day), o, max(o, c), min(o, c), c, volume)


def history(days: int, start: dt.date = dt.date(2000, 1, 3)) -> list[Bar]:
    """`days` consecutive weekday bars with distinct prices."""
    bars = []
    day = start
    while len(bars) < days:
        if day.weekday() < 5:
            price = Decimal(100 + len(bars) % 50) + Decimal(len(bars) % 97) / 100
            bars.append(
                Bar(day, price, price + 1, price - 1, price + Decimal("0.5"), 1000 + len(bars))
            )
        day += dt.timedelta(days=1)
    return bars
