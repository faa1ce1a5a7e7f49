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


# One statement, so the count and the page come from one snapshot in one round trip. The page's
# keys come from index-only scans and only its `limit` rows are read from the heap; a page past
# the end reads nothing (the offset is checked against the count).
_PAGE_SQL = f"""
WITH matching AS ({{count_sql}})
SELECT m.n, p.symbol, p.date,
       {price_text("p.open_price")}, {price_text("p.close_price")}, p.volume
FROM matching AS m
LEFT JOIN LATERAL (
    SELECT f.symbol, f.date, f.open_price, f.close_price, f.volume
    FROM ({{keys_sql}}) AS k
    JOIN financial_data AS f ON f.symbol = k.symbol AND f.date = k.date
) AS p ON true
ORDER BY p.date, p.symbol
"""

# Without a symbol the offset walks the (date, symbol) keys one by one.
_KEYS_BY_DATE_SQL = """
SELECT symbol, date FROM financial_data {where}
ORDER BY date, symbol LIMIT {limit} OFFSET {offset}
"""

# One symbol's page starts in the month its first row falls in: the monthly day counts
# (migration 0004, one index entry a month) add up to the offset, and the walk on the keys
# starts at that month's first day. `target` is the offset counted from the first day of the
# start date's month; `skip` is what is left of it there. Page 1,000 of 5 walks some 240
# monthly entries and 20 keys instead of 4,995 keys.
_KEYS_OF_SYMBOL_SQL = """
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


def _by_date(
    filters: PriceFilter, arguments: Arguments, limit: str, offset: str
) -> tuple[str, str]:
    """The count and the keys without a symbol: the count from the per-symbol counts (migration
    0003) without dates, else by scanning the dates' index."""
    conditions = filters.where(arguments)
    count_sql = (
        f"SELECT count(*) AS n FROM financial_data {where_clause(conditions)}"
        if conditions
        else "SELECT coalesce(sum(rows), 0)::bigint AS n FROM financial_data_counts"
    )
    where = where_clause([*conditions, f"{offset} < m.n"])
    return count_sql, _KEYS_BY_DATE_SQL.format(where=where, limit=limit, offset=offset)


def _of_symbol(
    filters: PriceFilter, symbol: str, arguments: Arguments, limit: str, offset: str
) -> tuple[str, str]:
    """The count and the keys of one symbol: the count from its row in the per-symbol counts
    without dates, else from the monthly sums and the rows of the partial months."""
    at = arguments(symbol)
    if filters.start_date is None and filters.end_date is None:
        count_sql = (
            f"SELECT coalesce((SELECT rows FROM financial_data_counts WHERE symbol = {at}), 0) AS n"
        )
    else:
        split = split_by_month(filters.start_date or dt.date.min, filters.end_date or dt.date.max)
        ranges = [
            f"{arguments(first)} AND {arguments(last)}"
            for first, last in (split.months, split.head, split.tail)
        ]
        days = month_parts(at, ranges, sums="days", row="1")
        count_sql = f"SELECT coalesce(sum(days), 0) AS n FROM ({days}) AS parts"
    # Real dates for absent bounds: one statement, and its generic plan, for every filter.
    start = filters.start_date or dt.date.min
    keys_sql = _KEYS_OF_SYMBOL_SQL.format(
        symbol=at,
        month=arguments(start.replace(day=1)),
        start=arguments(start),
        end=arguments(filters.end_date or dt.date.max),
        limit=limit,
        offset=offset,
    )
    return count_sql, keys_sql


async def price_page(fetch: Fetch, filters: PriceFilter, *, limit: int, offset: int) -> PricePage:
    """The days matching the filters, by date then symbol: their count and one page of them."""
    arguments = Arguments()
    limit_at, offset_at = arguments(limit), arguments(offset)
    count_sql, keys_sql = (
        _by_date(filters, arguments, limit_at, offset_at)
        if filters.symbol is None
        else _of_symbol(filters, filters.symbol, arguments, limit_at, offset_at)
    )
    result = await fetch(
        _PAGE_SQL.format(count_sql=count_sql, keys_sql=keys_sql), *arguments.values
    )
    # An empty page is the count alone, on a row of NULLs (the LEFT JOIN).
    rows: list[PriceRow] = [] if result[0][1] is None else [row[1:] for row in result]
    return PricePage(count=result[0][0], rows=rows)
