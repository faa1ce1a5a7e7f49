"""Stored daily prices: idempotent bulk upsert, paginated reads and SQL-side statistics."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from sqlalchemy import Connection, text
from sqlmodel import Session

# One statement per payload: the rows travel as arrays and are unnested server-side, so a
# 6,500-row full history is one round trip. Each array is one text literal ('{1.5,2.25}'):
# psycopg2 would otherwise send ARRAY[1.5, 2.25, ...], 39,000 constants for the server to parse
# and the client to render, which made the upsert several times slower. `IS DISTINCT FROM`
# keeps unchanged rows untouched (no dead tuples, no updated_at churn), `xmax = 0` tells
# inserted rows from updated ones, and only the two totals come back.
_UPSERT_SQL = text(
    """
    WITH written AS (
        INSERT INTO financial_data AS f
            (symbol, date, open_price, high_price, low_price, close_price, volume)
        SELECT :symbol, d, o, h, l, c, v
        FROM unnest(
            CAST(:dates AS date[]), CAST(:opens AS numeric[]), CAST(:highs AS numeric[]),
            CAST(:lows AS numeric[]), CAST(:closes AS numeric[]), CAST(:volumes AS bigint[])
        ) AS t(d, o, h, l, c, v)
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
    )
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
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
    inserted, updated = session.execute(
        _UPSERT_SQL,
        {
            "symbol": symbol,
            "dates": _array_literal(bar.date for bar in bars),
            "opens": _array_literal(bar.open for bar in bars),
            "highs": _array_literal(bar.high for bar in bars),
            "lows": _array_literal(bar.low for bar in bars),
            "closes": _array_literal(bar.close for bar in bars),
            "volumes": _array_literal(bar.volume for bar in bars),
        },
    ).one()
    return UpsertResult(inserted=inserted, updated=updated)


def _array_literal(values: Iterable[dt.date | Decimal | int]) -> str:
    # Dates, decimals and integers print without quotes, commas or braces: no escaping needed.
    return "{" + ",".join(map(str, values)) + "}"


@dataclass(frozen=True, slots=True)
class PriceFilter:
    """Optional filters of a price listing."""

    symbol: str | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    def conditions(self) -> list[str]:
        """SQL conditions on financial_data for the filters that are set."""
        clauses = []
        if self.symbol is not None:
            clauses.append("symbol = :symbol")
        if self.start_date is not None:
            clauses.append("date >= :start_date")
        if self.end_date is not None:
            clauses.append("date <= :end_date")
        return clauses

    def params(self) -> dict[str, object]:
        """The bind parameters of conditions()."""
        return {"symbol": self.symbol, "start_date": self.start_date, "end_date": self.end_date}


PriceRow = tuple[str, dt.date, Decimal, Decimal, int]


@dataclass(frozen=True, slots=True)
class PricePage:
    """One page of stored days and how many days match the filters in all."""

    count: int
    rows: list[PriceRow]


def _where(conditions: Sequence[str]) -> str:
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


# One statement, so the count and the page come from one snapshot in one round trip. The page
# walks its offset on (symbol, date) keys alone, an index-only scan, and reads only `limit` rows
# from the heap; a page past the end reads nothing (the offset is checked against the count).
_PAGE_SQL = """
WITH matching AS ({count_sql})
SELECT m.n, p.symbol, p.date, p.open_price, p.close_price, p.volume
FROM matching AS m
LEFT JOIN LATERAL (
    SELECT f.symbol, f.date, f.open_price, f.close_price, f.volume
    FROM (
        SELECT symbol, date FROM financial_data {page_where}
        ORDER BY date, symbol LIMIT :limit OFFSET :offset
    ) AS k
    JOIN financial_data AS f ON f.symbol = k.symbol AND f.date = k.date
) AS p ON true
ORDER BY p.date, p.symbol
"""


def _count_sql(filters: PriceFilter, conditions: Sequence[str]) -> str:
    # Without dates the count is kept per symbol by triggers (migration 0003): no scan at all.
    if filters.start_date is None and filters.end_date is None:
        if filters.symbol is None:
            return "SELECT coalesce(sum(rows), 0)::bigint AS n FROM financial_data_counts"
        return (
            "SELECT coalesce((SELECT rows FROM financial_data_counts"
            " WHERE symbol = :symbol), 0) AS n"
        )
    return f"SELECT count(*) AS n FROM financial_data {_where(conditions)}"


def price_page(
    connection: Connection, filters: PriceFilter, *, limit: int, offset: int
) -> PricePage:
    """The days matching the filters, by date then symbol: their count and one page of them."""
    conditions = filters.conditions()
    sql = _PAGE_SQL.format(
        count_sql=_count_sql(filters, conditions),
        page_where=_where([*conditions, ":offset < m.n"]),
    )
    result = connection.execute(
        text(sql), {**filters.params(), "limit": limit, "offset": offset}
    ).all()
    rows: list[PriceRow] = [
        (row[1], row[2], row[3], row[4], row[5]) for row in result if row[1] is not None
    ]
    return PricePage(count=int(result[0][0]), rows=rows)


@dataclass(frozen=True, slots=True)
class PriceStatistics:
    """Averages over the stored trading days of a range, rounded half-up in SQL."""

    days: int
    average_open: Decimal
    average_close: Decimal
    average_volume: int


_STATISTICS_SQL = text(
    "SELECT count(*), round(avg(open_price), 2), round(avg(close_price), 2),"
    " round(avg(volume)) FROM financial_data"
    " WHERE symbol = :symbol AND date BETWEEN :start_date AND :end_date"
)


def price_statistics(
    connection: Connection, symbol: str, start_date: dt.date, end_date: dt.date
) -> PriceStatistics | None:
    """Averages of `symbol` between the dates (inclusive), or None when no day is stored."""
    # PostgreSQL's round(numeric) rounds half away from zero: half-up for these positive values.
    row = connection.execute(
        _STATISTICS_SQL, {"symbol": symbol, "start_date": start_date, "end_date": end_date}
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
    # String work on the fixed-point form: several times faster than normalize() + quantize(),
    # and every listed price goes through here.
    whole, _, fraction = format(value, "f").partition(".")
    return f"{whole}.{fraction.rstrip('0'):0<2}"
