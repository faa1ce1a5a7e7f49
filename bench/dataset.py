"""The read benchmark's data set: N symbols x every trading day of Y years, loaded in SQL.

Two layouts of the same rows. `day` (the default) inserts day after day across all symbols, as
years of daily refreshes leave the table: a symbol's rows end up one per heap page. `symbol`
inserts each symbol's whole history in one piece, as a first full fetch does: its rows share
pages, which flatters every read that visits many of one symbol's rows.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.pg import connect
from shared.market_calendar import trading_days

logger = logging.getLogger(__name__)

# Deterministic, plausible bars: a slow sine around a per-symbol base price, 4-decimal storage
# like AlphaVantage's ("153.0800"), so reads exercise the trailing-zero formatting too.
_INSERT_SQL = """
INSERT INTO financial_data
    (symbol, date, open_price, high_price, low_price, close_price, volume, updated_at)
SELECT 'S' || lpad(s::text, 4, '0'), d.day,
       c.open * 0.0100, (c.open + c.open / 50) * 0.0100, (c.close - c.close / 50) * 0.0100,
       c.close * 0.0100, 100000 + (s * 7919 + d.i * 104729) %% 5000000, now()
FROM generate_series(%(first_symbol)s, %(last_symbol)s) AS s
CROSS JOIN bench_days AS d
CROSS JOIN LATERAL (
    SELECT ((2000 + (s * 3700) %% 38000) * (1 + 0.3 * sin(d.i / 40.0 + s)))::int AS open,
           ((2000 + (s * 3700) %% 38000) * (1 + 0.3 * sin(d.i / 40.0 + s + 0.01)))::int AS close
) AS c
WHERE d.i BETWEEN %(first_day)s AND %(last_day)s
ORDER BY {order}
"""
# Insertion order, so physical order, of each layout: day-major or symbol-major.
LAYOUTS = {"day": "d.i, s", "symbol": "s, d.i"}


@dataclass(frozen=True)
class DataSet:
    """What was loaded: symbols S0001..SNNNN over `first_day`..`last_day`."""

    symbols: int
    first_day: dt.date
    last_day: dt.date
    rows: int
    seconds: float
    layout: str

    def symbol(self, number: int) -> str:
        """The name of symbol `number` (1-based)."""
        return f"S{number:04d}"


def load_dataset(
    database_url: str, *, symbols: int, years: int, end_year: int, layout: str = "day"
) -> DataSet:
    """Fill an empty financial_data in `layout` order; indexes are dropped during the load and
    rebuilt after (the triggers of the per-symbol counts and monthly sums stay)."""
    began = time.monotonic()
    first_day, last_day = dt.date(end_year - years + 1, 1, 1), dt.date(end_year, 12, 31)
    days = trading_days(first_day, last_day)
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'financial_data'::regclass AND contype = 'p'"
        )
        primary_key = cur.fetchone()
        cur.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'financial_data'"
            " AND indexname <> %s",
            (primary_key[0],),
        )
        indexes = cur.fetchall()
        cur.execute(f'ALTER TABLE financial_data DROP CONSTRAINT "{primary_key[0]}"')
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        cur.execute("CREATE UNLOGGED TABLE bench_days (i int PRIMARY KEY, day date NOT NULL)")
        cur.copy_expert(
            "COPY bench_days FROM STDIN",
            io.StringIO("".join(f"{i}\t{day.isoformat()}\n" for i, day in enumerate(days))),
        )
    # Two loaders in parallel: the machine has two cores and the insert is CPU-bound. Each
    # takes half of the symbols (symbol layout) or half of the days (day layout).
    everything = {"first_symbol": 1, "last_symbol": symbols, "first_day": 0, "last_day": len(days)}
    if layout == "day":
        middle = len(days) // 2
        halves = [
            {**everything, "last_day": middle - 1},
            {**everything, "first_day": middle},
        ]
    else:
        halves = [
            {**everything, "last_symbol": symbols // 2},
            {**everything, "first_symbol": symbols // 2 + 1},
        ]
    sql = _INSERT_SQL.format(order=LAYOUTS[layout])
    with ThreadPoolExecutor(len(halves)) as pool:
        list(pool.map(lambda span: _insert(database_url, sql, span), halves))
    loaded = time.monotonic()
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute("SET max_parallel_maintenance_workers = 2")
        cur.execute(
            f'ALTER TABLE financial_data ADD CONSTRAINT "{primary_key[0]}" {primary_key[1]}'
        )
        for _, definition in indexes:
            cur.execute(definition)
        cur.execute("DROP TABLE bench_days")
        # Sets the visibility maps, so counts and monthly sums are index-only scans without
        # heap fetches, and the planner's stats: what autovacuum leaves after a while.
        cur.execute("VACUUM ANALYZE financial_data, financial_data_counts, financial_data_monthly")
        cur.execute("SELECT count(*) FROM financial_data")
        rows = cur.fetchone()[0]
    seconds = time.monotonic() - began
    logger.info(
        "loaded %d rows in %.1f s (insert %.1f s, indexes and vacuum %.1f s)",
        rows,
        seconds,
        loaded - began,
        seconds - (loaded - began),
    )
    return DataSet(symbols, days[0], days[-1], rows, seconds, layout)


def _insert(database_url: str, sql: str, span: dict[str, int]) -> None:
    with connect(database_url) as conn, conn.cursor() as cur:
        # The ORDER BY sorts millions of rows: in memory, not in temporary files.
        cur.execute("SET work_mem = '512MB'")
        cur.execute(sql, span)
