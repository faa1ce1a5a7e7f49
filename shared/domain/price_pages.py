"""Pages of stored prices: the listing's count and one page of its rows, in one statement.

Like the other reads (`shared.domain.prices`), an asyncpg statement with positional (`$1`)
parameters, run by whoever passes a `Fetch`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from shared.domain.prices import (
    Arguments,
    Fetch,
    PriceFilter,
    month_parts,
    price_text,
    split_by_month,
    where_clause,
)

PriceRow = tuple[str, dt.date, str, str, int]


@dataclass(frozen=True, slots=True)
class PricePage:
    """One page of stored days and how many days match the filters in all."""

    count: int
    rows: list[PriceRow]


# One statement, so the count and the page come from one snapshot in one round trip.
_PAGE_SQL = f"""
WITH matching AS ({{count_sql}})
SELECT m.n, p.symbol, p.date,
       {price_text("p.open_price")}, {price_text("p.close_price")}, p.volume
FROM matching AS m
LEFT JOIN LATERAL ({{rows_sql}}) AS p ON true
ORDER BY p.date, p.symbol
"""

# The first page: its rows straight from the index scan, `limit` heap rows and no more.
_FIRST_ROWS_SQL = """
SELECT symbol, date, open_price, close_price, volume FROM financial_data {where}
ORDER BY date, symbol LIMIT {limit}
"""

# A later page: the rows it skips are walked as keys alone (index-only scans, never a heap
# page), then only its own rows are read from the heap, one index lookup each. A page past the
# end reads nothing (the offset is checked against the count).
_LATER_ROWS_SQL = """
SELECT f.symbol, f.date, f.open_price, f.close_price, f.volume
FROM ({keys_sql}) AS k
JOIN financial_data AS f ON f.symbol = k.symbol AND f.date = k.date
"""

# The keys of a later page, from the first matching one on: (symbol, date) or (date, symbol).
_KEYS_SQL = """
SELECT symbol, date FROM financial_data {where}
ORDER BY date, symbol LIMIT {limit} OFFSET {offset}
"""

# From this offset on, a symbol's page starts in the month its first row falls in: the monthly
# day counts (migration 0004, one index entry a month) add up to the offset, and the walk on
# the keys starts at that month's first day. `target` is the offset counted from the first day
# of the start date's month; `skip` is what is left of it there. Page 1,000 of 5 adds up about
# 240 months and walks about 10 keys instead of 4,995. Below the offset walking the keys costs
# less (docs/benchmarks.md, "Deep pages").
JUMP_FROM_OFFSET = 1000
_KEYS_BY_MONTH_SQL = """
SELECT k.symbol, k.date
FROM (
    SELECT {offset} + count(*) AS target FROM financial_data
    WHERE symbol = {symbol} AND date >= {month} AND date < {start}
) AS t
CROSS JOIN LATERAL (
    SELECT w.month, t.target - (w.running - w.days) AS skip
    FROM (
        SELECT month, days, sum(days) OVER (ORDER BY month) AS running
        FROM financial_data_monthly WHERE symbol = {symbol} AND month >= {month}
    ) AS w
    WHERE w.running > t.target
    ORDER BY w.month LIMIT 1
) AS s
CROSS JOIN LATERAL (
    SELECT symbol, date FROM financial_data
    WHERE symbol = {symbol} AND date >= s.month AND date <= {end}
    ORDER BY date LIMIT {limit} OFFSET s.skip
) AS k
WHERE {offset} < m.n
"""

# From a range of this many days on (three whole months or more), a symbol's count with dates
# adds up the monthly sums and counts only the rows of the partial months at the edges; below it
# counting the keys costs less.
SUM_FROM_DAYS = 120


def _count_sql(filters: PriceFilter, arguments: Arguments) -> tuple[str, list[str] | None]:
    """How many days match: without dates, from the per-symbol counts (migration 0003); for a
    symbol over SUM_FROM_DAYS or more, from the monthly sums; else by counting the keys. With
    the filters' conditions (PriceFilter.where) when it used them, for the rows to share."""
    if filters.start_date is None and filters.end_date is None:
        if filters.symbol is None:
            return "SELECT coalesce(sum(rows), 0)::bigint AS n FROM financial_data_counts", []
        conditions = filters.where(arguments)  # the symbol's alone
        return (
            "SELECT coalesce((SELECT rows FROM financial_data_counts"
            f" WHERE {conditions[0]}), 0) AS n"
        ), conditions
    start, end = filters.start_date or dt.date.min, filters.end_date or dt.date.max
    if filters.symbol is None or (end - start).days < SUM_FROM_DAYS:
        conditions = filters.where(arguments)
        return f"SELECT count(*) AS n FROM financial_data {where_clause(conditions)}", conditions
    ranges = [
        f"{arguments(first)} AND {arguments(last)}" for first, last in split_by_month(start, end)
    ]
    days = month_parts(arguments(filters.symbol), ranges, sums="days", row="1")
    return f"SELECT coalesce(sum(days), 0) AS n FROM ({days}) AS parts", None


def _rows_sql(
    filters: PriceFilter,
    conditions: list[str] | None,
    arguments: Arguments,
    *,
    limit: int,
    offset: int,
) -> str:
    """The page's rows: the first page's straight from the index, a later page's by its keys.
    `conditions`: the filters' as the count added them, or None if it did not."""
    if offset == 0:
        if conditions is None:
            conditions = filters.where(arguments)
        return _FIRST_ROWS_SQL.format(where=where_clause(conditions), limit=arguments(limit))
    limit_at, offset_at = arguments(limit), arguments(offset)
    if filters.symbol is None or offset < JUMP_FROM_OFFSET:
        if conditions is None:
            conditions = filters.where(arguments)
        where = where_clause([*conditions, f"{offset_at} < m.n"])
        keys_sql = _KEYS_SQL.format(where=where, limit=limit_at, offset=offset_at)
    else:
        # Real dates for absent bounds: one statement, and its generic plan, for every filter.
        start = filters.start_date or dt.date.min
        keys_sql = _KEYS_BY_MONTH_SQL.format(
            symbol=arguments(filters.symbol),
            month=arguments(start.replace(day=1)),
            start=arguments(start),
            end=arguments(filters.end_date or dt.date.max),
            limit=limit_at,
            offset=offset_at,
        )
    return _LATER_ROWS_SQL.format(keys_sql=keys_sql)


async def price_page(fetch: Fetch, filters: PriceFilter, *, limit: int, offset: int) -> PricePage:
    """The days matching the filters, by date then symbol: their count and one page of them."""
    arguments = Arguments()
    # The rows reuse the count's conditions and values where they can: fewer to encode and send.
    count_sql, conditions = _count_sql(filters, arguments)
    sql = _PAGE_SQL.format(
        count_sql=count_sql,
        rows_sql=_rows_sql(filters, conditions, arguments, limit=limit, offset=offset),
    )
    result = await fetch(sql, *arguments.values)
    # An empty page is the count alone, on a row of NULLs (the LEFT JOIN).
    rows: list[PriceRow] = [] if result[0][1] is None else [row[1:] for row in result]
    return PricePage(count=result[0][0], rows=rows)
