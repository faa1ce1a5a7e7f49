"""Price data for the domain tests of prices: random bars on weekdays, date ranges, and writes
that change stored days (hypothesis strategies and their effect on a session); and the API's read
pool for synchronous tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import Coroutine
from decimal import Decimal
from typing import Any, TypeVar

from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from api.read_pool import ReadPool
from shared.domain.prices import upsert_prices
from shared.upstream.parser import DailyBar

T = TypeVar("T")

SYMBOLS = ("IBM", "AAPL", "BRK.B")
FIRST_DAY, LAST_DAY = dt.date(2019, 11, 1), dt.date(2022, 2, 28)


def price(rng: random.Random) -> Decimal:
    """A positive price with 0 to 6 decimals, trailing zeros kept as AlphaVantage sends them."""
    scale = rng.randint(0, 6)
    return (
        Decimal(rng.randint(1, 500_000_000)).scaleb(-scale)
        if scale
        else Decimal(rng.randint(1, 5000))
    )


def bars(rng: random.Random, days: list[dt.date]) -> list[DailyBar]:
    """A random bar for each day."""
    result = []
    for day in days:
        open_, close = price(rng), price(rng)
        volume = rng.choice([0, 1, rng.randint(1, 10**6), rng.randint(1, 10**11)])
        result.append(DailyBar(day, open_, max(open_, close), min(open_, close), close, volume))
    return result


def weekdays(first: dt.date, last: dt.date) -> list[dt.date]:
    """Monday to Friday from `first` to `last`, inclusive."""
    count = (last - first).days + 1
    return [d for d in (first + dt.timedelta(days=i) for i in range(count)) if d.weekday() < 5]


def next_month(day: dt.date) -> dt.date:
    """The first day of the month after `day`'s."""
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


around_the_data = st.dates(FIRST_DAY - dt.timedelta(days=40), LAST_DAY + dt.timedelta(days=40))


@st.composite
def date_ranges(draw: st.DrawFn) -> tuple[dt.date, dt.date]:
    """Any range, one inside a month, one across a year end, or one on month boundaries."""
    kind = draw(st.sampled_from(["any", "within a month", "across a year end", "month edges"]))
    if kind == "within a month":
        start = draw(around_the_data)
        month_end = next_month(start) - dt.timedelta(days=1)
        return start, draw(st.dates(start, month_end))
    if kind == "across a year end":
        year = draw(st.integers(FIRST_DAY.year, LAST_DAY.year))
        start = dt.date(year, 12, 31) - dt.timedelta(days=draw(st.integers(0, 400)))
        end = dt.date(year + 1, 1, 1) + dt.timedelta(days=draw(st.integers(0, 400)))
        return start, end
    if kind == "month edges":
        first, last = sorted([draw(around_the_data), draw(around_the_data)])
        start = first.replace(day=1) - dt.timedelta(days=draw(st.sampled_from([0, 1])))
        end = next_month(last) - dt.timedelta(days=draw(st.sampled_from([1, 2])))
        return (start, end) if start <= end else (end, start)
    first, last = sorted([draw(around_the_data), draw(around_the_data)])
    return first, last


# A write to stored days: new prices and days, deleted days, or days moved on and elsewhere.
write = st.one_of(
    st.tuples(st.just("upsert"), st.sampled_from(SYMBOLS), around_the_data, st.integers(1, 60)),
    st.tuples(st.just("delete"), st.sampled_from(SYMBOLS), around_the_data, st.integers(1, 60)),
    st.tuples(st.just("move"), st.sampled_from(SYMBOLS), around_the_data, st.integers(1, 60)),
)


def apply_write(
    session: Session, rng: random.Random, change: tuple[str, str, dt.date, int]
) -> None:
    """One drawn `write`, committed."""
    kind, symbol, first, length = change
    last = first + dt.timedelta(days=length)
    if kind == "upsert":
        # New prices (other scales) for old days, and new days past the stored ones.
        upsert_prices(session, symbol, bars(rng, weekdays(first, last)))
    elif kind == "delete":
        session.execute(
            text("DELETE FROM financial_data WHERE symbol = :s AND date BETWEEN :a AND :b"),
            {"s": symbol, "a": first, "b": last},
        )
    else:
        # A plain UPDATE moving days a week on (maybe into another month) and to another
        # symbol, prices changed; days whose new place is taken stay.
        session.execute(
            text(
                "UPDATE financial_data AS f SET date = f.date + 7, symbol = :t,"
                " open_price = f.open_price * 1.5"
                " WHERE f.symbol = :s AND f.date BETWEEN :a AND :b AND NOT EXISTS"
                " (SELECT FROM financial_data AS g WHERE g.symbol = :t AND g.date = f.date + 7)"
            ),
            {"s": symbol, "t": rng.choice(SYMBOLS), "a": first, "b": last},
        )
    session.commit()


class BlockingReads:
    """The API's read pool (its generic plans) on its own event loop, for the synchronous
    hypothesis tests."""

    def __init__(self, database_url: str) -> None:
        self._runner = asyncio.Runner()
        self.pool = ReadPool(lambda: database_url)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coroutine)

    def close(self) -> None:
        self._runner.run(self.pool.close())
        self._runner.close()
