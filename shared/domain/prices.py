"""Stored daily prices: idempotent bulk upsert, paginated reads, the CSV export and statistics.

Writes run on a SQLAlchemy session (in the caller's transaction); reads are asyncpg statements
with positional (`$1`) parameters, run by whoever passes a `Fetch` (the API's read pool) or an
asyncpg connection (the export). Prices are rendered as text in SQL, by `price_text`, so the
listing, the export and `stockpile export` show them alike and COPY can stream them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from asyncpg import Connection, Record
from sqlalchemy import text
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


class Fetch(Protocol):
    """Runs one statement with positional (`$1`) arguments and returns its rows.

    asyncpg's `Connection.fetch`, or the API's pool that retries a read on a dead connection.
    """

    def __call__(self, query: str, *args: object) -> Awaitable[Sequence[Record]]: ...


class Arguments:
    """A statement's positional arguments: each value added once, referred to as `$n`."""

    def __init__(self) -> None:
        self.values: list[object] = []

    def __call__(self, value: object) -> str:
        """Add `value`; its placeholder."""
        self.values.append(value)
        return f"${len(self.values)}"


@dataclass(frozen=True, slots=True)
class PriceFilter:
    """Optional filters of a price listing."""

    symbol: str | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None

    def where(self, arguments: Arguments) -> list[str]:
        """SQL conditions on financial_data for the filters that are set (their values added)."""
        return [
            condition.format(arguments(value))
            for condition, value in (
                ("symbol = {}", self.symbol),
                ("date >= {}", self.start_date),
                ("date <= {}", self.end_date),
            )
            if value is not None
        ]


def price_text(column: str) -> str:
    """SQL rendering a numeric column as the contract shows prices: at least two decimals and
    no trailing zeros beyond them ("153.08", "170.10", "0.1234"), never an exponent."""
    trimmed = f"trim_scale({column})"
    # round() to a scale at least the value's own only pads it with zeros.
    return f"round({trimmed}, greatest(scale({trimmed}), 2))::text"


def where_clause(conditions: Sequence[str]) -> str:
    """`WHERE` and the conditions joined by `AND`, or nothing without conditions."""
    return ("WHERE " + " AND ".join(conditions)) if conditions else ""


@dataclass(frozen=True, slots=True)
class PriceStatistics:
    """Averages over the stored trading days of a range, rounded half-up in SQL."""

    days: int
    average_open: Decimal
    average_close: Decimal
    average_volume: int


# Inclusive first and last days.
DateRange = tuple[dt.date, dt.date]

# An empty part: no date lies between these two. Real dates rather than NULLs keep the
# statement's generic plan (a NULL bound is folded away by a custom plan, planned every time).
NOTHING = (dt.date.max, dt.date.min)

# Every statistics request splits its range, so the month arithmetic is date +/- timedelta
# from this table, and the split a plain tuple: date(), replace(), calendar.monthrange() and a
# dataclass or NamedTuple cost several times more (docs/benchmarks.md, "API CPU per request").
_DAYS = tuple(dt.timedelta(days=n) for n in range(33))
_ONE_DAY = _DAYS[1]
_LAST_DAY = dt.date.max


def split_by_month(start: dt.date, end: dt.date) -> tuple[DateRange, DateRange, DateRange]:
    """`start`..`end` cut into the whole months it covers (first days, inclusive) and the days
    of the partial months at its two edges: (months, head, tail); an empty part is NOTHING."""
    ends_month = end == _LAST_DAY or (end + _ONE_DAY).day == 1
    try:
        first = start if start.day == 1 else _month_after(start)
        last = _month_start(end) if ends_month else _month_before(end)
    except OverflowError:  # a month before year 1 or after 9999: no whole month there
        first, last = end, start
    if first > last:
        return NOTHING, (start, end), NOTHING
    return (
        (first, last),
        (start, first - _ONE_DAY) if first > start else NOTHING,
        NOTHING if ends_month else (_month_start(end), end),
    )


def _month_start(day: dt.date) -> dt.date:
    return day - _DAYS[day.day - 1]


def _month_after(day: dt.date) -> dt.date:
    # Day "32" of a month is day 1 to 4 of the next one.
    return _month_start(day + _DAYS[32 - day.day])


def _month_before(day: dt.date) -> dt.date:
    return _month_start(_month_start(day) - _ONE_DAY)


# A symbol's days in a range: the whole months from their sums (migration 0004: exact, kept in
# the writing transaction, an index-only scan), the partial months at the edges from their rows:
# at most about 45 rows and one leaf page per 100-odd months, however long the range. `ranges`
# are the months', the head's and the tail's bounds, as from split_by_month.
_MONTH_PARTS_SQL = """
    SELECT {sums} FROM financial_data_monthly WHERE symbol = {symbol} AND month BETWEEN {months}
    UNION ALL
    SELECT {row} FROM financial_data WHERE symbol = {symbol} AND date BETWEEN {head}
    UNION ALL
    SELECT {row} FROM financial_data WHERE symbol = {symbol} AND date BETWEEN {tail}
"""


def month_parts(symbol: str, ranges: Sequence[str], *, sums: str, row: str) -> str:
    """The parts of a symbol's days in a range (UNION ALL): `sums` of its months, `row` of its
    edge days."""
    months, head, tail = ranges
    return _MONTH_PARTS_SQL.format(
        symbol=symbol, months=months, head=head, tail=tail, sums=sums, row=row
    )


# avg() is sum / count in numeric, so dividing the same exact sums by the same count gives the
# same average to the last digit; PostgreSQL's round(numeric) then rounds half away from zero:
# half-up for these positive values.
_STATISTICS_SQL = f"""
SELECT sum(days),
       round(sum(open_sum) / nullif(sum(days), 0), 2),
       round(sum(close_sum) / nullif(sum(days), 0), 2),
       round(sum(volume_sum) / nullif(sum(days), 0))
FROM ({
    month_parts(
        "$1",
        ["$2 AND $3", "$4 AND $5", "$6 AND $7"],
        sums="days, open_sum, close_sum, volume_sum",
        row="1, open_price, close_price, volume",
    )
}) AS parts
"""


async def price_statistics(
    fetch: Fetch, symbol: str, start_date: dt.date, end_date: dt.date
) -> PriceStatistics | None:
    """Averages of `symbol` between the dates (inclusive), or None when no day is stored."""
    months, head, tail = split_by_month(start_date, end_date)
    days, average_open, average_close, average_volume = (
        await fetch(_STATISTICS_SQL, symbol, *months, *head, *tail)
    )[0]
    if not days:
        return None
    return PriceStatistics(
        days=days,
        average_open=average_open,
        average_close=average_close,
        average_volume=int(average_volume),
    )


# The listing's rows with every stored column; COPY's CSV header is these names.
_EXPORT_SQL = f"""
SELECT symbol, date,
       {price_text("open_price")} AS open_price, {price_text("high_price")} AS high_price,
       {price_text("low_price")} AS low_price, {price_text("close_price")} AS close_price,
       volume
FROM financial_data {{where}}
ORDER BY date, symbol
"""

CsvSink = Callable[[bytes], Coroutine[Any, Any, None]]


def export_query(filters: PriceFilter) -> tuple[str, list[object]]:
    """The export's SELECT with `$n` parameters for the filters, and their values."""
    arguments = Arguments()
    return _EXPORT_SQL.format(where=where_clause(filters.where(arguments))), arguments.values


async def copy_prices_csv(connection: Connection, filters: PriceFilter, sink: CsvSink) -> None:
    """The days matching the filters as CSV with a header line, in the listing's order,
    handed to `sink` chunk by chunk as PostgreSQL's COPY produces them (memory stays flat)."""
    query, values = export_query(filters)
    # COPY takes no parameters: asyncpg has the server quote the values into the statement.
    await connection.copy_from_query(
        query,
        *values,
        output=sink,
        format="csv",
        header=True,
    )


# One statement: the count and the page from one snapshot of the per-symbol counts (migration
# 0003), never a scan of financial_data.
_STORED_SYMBOLS_SQL = """
WITH stored AS (SELECT symbol, rows FROM financial_data_counts WHERE rows > 0)
SELECT (SELECT count(*) FROM stored), s.symbol, s.rows
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (SELECT symbol, rows FROM stored ORDER BY symbol LIMIT $1 OFFSET $2) AS s ON true
ORDER BY s.symbol
"""


async def stored_symbols(
    fetch: Fetch, *, limit: int, offset: int
) -> tuple[int, list[tuple[str, int]]]:
    """How many symbols have stored prices, and one page of them (symbol, rows) by symbol."""
    result = await fetch(_STORED_SYMBOLS_SQL, limit, offset)
    rows = [] if result[0][1] is None else [(row[1], int(row[2])) for row in result]
    return int(result[0][0]), rows
