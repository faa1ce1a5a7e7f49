"""Stored daily prices: idempotent bulk upsert, paginated reads and SQL-side statistics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sqlalchemy import text
from sqlmodel import Session

# One statement per payload: the rows travel as arrays and are unnested server-side, so a
# 6,500-row full history is one round trip. `IS DISTINCT FROM` keeps unchanged rows untouched
# (no dead tuples, no updated_at churn), and `xmax = 0` tells inserted rows from updated ones.
_UPSERT_SQL = text(
    """
    INSERT INTO financial_data AS f
        (symbol, date, open_price, high_price, low_price, close_price, volume)
    SELECT :symbol, d, o, h, l, c, v
    FROM unnest(CAST(:dates AS date[]), CAST(:opens AS numeric[]), CAST(:highs AS numeric[]),
                CAST(:lows AS numeric[]), CAST(:closes AS numeric[]), CAST(:volumes AS bigint[]))
         AS t(d, o, h, l, c, v)
    ON CONFLICT (symbol, date) DO UPDATE SET
        open_price = EXCLUDED.open_price,
        high_price = EXCLUDED.high_price,
        low_price = EXCLUDED.low_price,
        close_price = EXCLUDED.close_price,
        volume = EXCLUDED.volume,
        updated_at = now()
    WHERE (f.open_price, f.high_price, f.low_price, f.close_price, f.volume)
          IS DISTINCT FROM
          (EXCLUDED.open_price, EXCLUDED.high_price, EXCLUDED.low_price, EXCLUDED.close_price,
           EXCLUDED.volume)
    RETURNING (xmax = 0) AS inserted
    """
)


class Bar(Protocol):
    """A daily price bar as parsed from AlphaVantage."""

    @property
    def date(self) -> dt.date: ...
    @property
    def open(self) -> Decimal: ...
    @property
    def high(self) -> Decimal: ...
    @property
    def low(self) -> Decimal: ...
    @property
    def close(self) -> Decimal: ...
    @property
    def volume(self) -> int: ...


@dataclass(frozen=True, slots=True)
class UpsertResult:
    """How many rows an upsert inserted and how many existing rows it changed."""

    inserted: int
    updated: int

    @property
    def written(self) -> int:
        """Rows inserted or changed."""
        return self.inserted + self.updated


def upsert_prices(session: Session, symbol: str, bars: Sequence[Bar]) -> UpsertResult:
    """Insert new days and replace changed ones for `symbol`, in one statement; no commit."""
    if not bars:
        return UpsertResult(inserted=0, updated=0)
    flags = session.execute(
        _UPSERT_SQL,
        {
            "symbol": symbol,
            "dates": [bar.date for bar in bars],
            "opens": [bar.open for bar in bars],
            "highs": [bar.high for bar in bars],
            "lows": [bar.low for bar in bars],
            "closes": [bar.close for bar in bars],
            "volumes": [bar.volume for bar in bars],
        },
    ).scalars()
    inserted = updated = 0
    for was_inserted in flags:
        if was_inserted:
            inserted += 1
        else:
            updated += 1
    return UpsertResult(inserted=inserted, updated=updated)


@dataclass(frozen=True, slots=True)
class PriceFilter:
    """Optional filters of a price listing."""

    symbol: str | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    def where_sql(self) -> str:
        clauses = []
        if self.symbol is not None:
            clauses.append("symbol = :symbol")
        if self.start_date is not None:
            clauses.append("date >= :start_date")
        if self.end_date is not None:
            clauses.append("date <= :end_date")
        return ("WHERE " + " AND ".join(clauses)) if clauses else ""

    def params(self) -> dict[str, object]:
        return {"symbol": self.symbol, "start_date": self.start_date, "end_date": self.end_date}


def count_prices(session: Session, filters: PriceFilter) -> int:
    """How many stored days match the filters."""
    sql = text(f"SELECT count(*) FROM financial_data {filters.where_sql()}")
    return int(session.execute(sql, filters.params()).scalar_one())


PriceRow = tuple[str, dt.date, Decimal, Decimal, int]


def list_prices(
    session: Session, filters: PriceFilter, *, limit: int, offset: int
) -> list[PriceRow]:
    """One page of stored days, by date then symbol."""
    sql = text(
        "SELECT symbol, date, open_price, close_price, volume FROM financial_data "
        f"{filters.where_sql()} ORDER BY date, symbol LIMIT :limit OFFSET :offset"
    )
    rows = session.execute(sql, {**filters.params(), "limit": limit, "offset": offset})
    return [(row[0], row[1], row[2], row[3], row[4]) for row in rows]


@dataclass(frozen=True, slots=True)
class PriceStatistics:
    """Averages over the stored trading days of a range, rounded half-up in SQL."""

    days: int
    average_open: Decimal
    average_close: Decimal
    average_volume: int


def price_statistics(
    session: Session, symbol: str, start_date: dt.date, end_date: dt.date
) -> PriceStatistics | None:
    """Averages of `symbol` between the dates (inclusive), or None when no day is stored."""
    # PostgreSQL's round(numeric) rounds half away from zero: half-up for these positive values.
    row = session.execute(
        text(
            "SELECT count(*), round(avg(open_price), 2), round(avg(close_price), 2),"
            " round(avg(volume)) FROM financial_data"
            " WHERE symbol = :symbol AND date BETWEEN :start_date AND :end_date"
        ),
        {"symbol": symbol, "start_date": start_date, "end_date": end_date},
    ).one()
    days, average_open, average_close, average_volume = row
    if days == 0:
        return None
    return PriceStatistics(
        days=days,
        average_open=average_open,
        average_close=average_close,
        average_volume=int(average_volume),
    )


def format_price(value: Decimal) -> str:
    """The decimal with at least two decimals and no trailing zeros beyond them."""
    normalized = value.normalize()
    exponent = normalized.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normalized = normalized.quantize(Decimal("0.01"))
    return format(normalized, "f")
