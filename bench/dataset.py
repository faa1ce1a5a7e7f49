"""The read benchmark's data set: N symbols x every trading day of Y years, loaded in SQL."""

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
FROM generate_series(%(first)s, %(last)s) AS s
CROSS JOIN bench_days AS d
CROSS JOIN LATERAL (
    SELECT ((2000 + (s * 3700) %% 38000) * (1 + 0.3 * sin(d.i / 40.0 + s)))::int AS open,
           ((2000 + (s * 3700) %% 38000) * (1 + 0.3 * sin(d.i / 40.0 + s + 0.01)))::int AS close
) AS c
"""


@dataclass(frozen=True)
class DataSet:
    """What was loaded: symbols S0001..SNNNN over `first_day`..`last_day`."""

    symbols: int
    first_day: dt.date
    last_day: dt.date
    rows: int
    seconds: float

    def symbol(self, number: int) -> str:
        """The name of symbol `number` (1-based)."""
        return f"S{number:04d}"


def load_dataset(database_url: str, *, symbols: int, years: int, end_year: int) -> DataSet:
    """Fill an empty financial_data; indexes are dropped during the load and rebuilt after."""
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
    # Two loaders in parallel: the machine has two cores and the insert is CPU-bound.
    halves = [(1, symbols // 2), (symbols // 2 + 1, symbols)]
    with ThreadPoolExecutor(len(halves)) as pool:
        list(pool.map(lambda span: _insert(database_url, *span), halves))
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
        # Sets the visibility map, so counts can be index-only scans, and the planner's stats.
        cur.execute("VACUUM ANALYZE financial_data")
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
    return DataSet(symbols, days[0], days[-1], rows, seconds)


def _insert(database_url: str, first: int, last: int) -> None:
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(_INSERT_SQL, {"first": first, "last": last})
