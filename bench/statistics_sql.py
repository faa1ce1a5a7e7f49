"""Statistics in SQL alone, three ways, on the read benchmark's data set.

- the earlier commit's statement: avg() over the rows, through the primary key;
- the same statement with a covering index (`(symbol, date) INCLUDE (open_price, close_price,
  volume)`): an index-only scan, no heap page per row;
- this commit's statement: the whole months' sums (migration 0004) and the edge days' rows.

Each is timed by pgbench, prepared, with one client (its latency: the SQL's own cost) and with
16 (its rate on the machine), and explained once (ANALYZE, BUFFERS) for the pages it touches.
The covering index is built only for its own measurement and dropped afterwards.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from bench.dataset import DataSet
from bench.loadgen import Throughput
from bench.pg import connect
from bench.readapi import read_cases, route_statements
from bench.sqlbaseline import Statement, run_sql_load

logger = logging.getLogger(__name__)

PLAIN_SQL = (
    "SELECT count(*), round(avg(open_price), 2), round(avg(close_price), 2),"
    " round(avg(volume)) FROM financial_data"
    " WHERE symbol = $1 AND date BETWEEN $2 AND $3"
)
COVERING_INDEX = "bench_financial_data_covering"
PLAIN = "avg() over the rows, primary key (earlier commit)"
COVERED = "avg() over the rows, covering index (index-only scan)"
MONTHLY = "monthly sums + edge days (this commit)"


@dataclass(frozen=True)
class StatisticsSqlResult:
    """One statement on one range."""

    range_name: str
    way: str
    single: Throughput
    concurrent: Throughput
    explain_ms: float
    buffers: int

    @property
    def single_ms(self) -> float:
        """Mean time per statement with one client."""
        return 1000 / self.single.rate if self.single.rate else float("inf")


def run_statistics_sql(
    database_url: str, data: DataSet, *, seconds: float
) -> list[StatisticsSqlResult]:
    """The three ways on each statistics case of the read benchmark."""
    cases = [case for case in read_cases(data) if case.path == "/api/statistics"]
    statements: dict[str, dict[str, Statement]] = {}
    for case in cases:
        (monthly,) = route_statements(database_url, case)
        symbol, start, end = (case.params[key] for key in ("symbol", "start_date", "end_date"))
        plain: Statement = (PLAIN_SQL, (symbol, start, end))
        statements[case.name] = {PLAIN: plain, MONTHLY: monthly, COVERED: plain}
    results: list[StatisticsSqlResult] = []
    for way in (PLAIN, MONTHLY, COVERED):
        if way == COVERED:
            _covering_index(database_url, create=True)
        try:
            for case in cases:
                statement = statements[case.name][way]
                explain_ms, buffers = _explain(database_url, statement)
                result = StatisticsSqlResult(
                    range_name=case.name.removeprefix("statistics, "),
                    way=way,
                    single=run_sql_load(database_url, [statement], seconds=seconds, clients=1),
                    concurrent=run_sql_load(database_url, [statement], seconds=seconds),
                    explain_ms=explain_ms,
                    buffers=buffers,
                )
                logger.info(
                    "%s, %s: %.3f ms alone, %.0f tx/s at 16 clients, %d buffers",
                    result.range_name,
                    way,
                    result.single_ms,
                    result.concurrent.rate,
                    result.buffers,
                )
                results.append(result)
        finally:
            if way == COVERED:
                _covering_index(database_url, create=False)
    return sorted(results, key=lambda result: (result.range_name, result.way))


def _covering_index(database_url: str, *, create: bool) -> None:
    with connect(database_url) as conn, conn.cursor() as cur:
        if not create:
            cur.execute(f"DROP INDEX {COVERING_INDEX}")
            return
        began = time.monotonic()
        cur.execute("SET maintenance_work_mem = '512MB'")
        cur.execute(
            f"CREATE INDEX {COVERING_INDEX} ON financial_data (symbol, date)"
            " INCLUDE (open_price, close_price, volume)"
        )
        cur.execute("VACUUM ANALYZE financial_data")  # the visibility map: index-only scans
        cur.execute(f"SELECT pg_relation_size('{COVERING_INDEX}')")
        size = cur.fetchone()[0]
        logger.info(
            "covering index: %.0f MiB, built in %.0f s", size / 2**20, time.monotonic() - began
        )


def _explain(database_url: str, statement: Statement) -> tuple[float, int]:
    """Execution time (ms) and shared buffers touched of one warm run."""
    sql, values = statement
    with connect(database_url) as conn, conn.cursor() as cur:
        cur.execute(f"PREPARE bench_statistics AS {sql}")
        placeholders = ", ".join(["%s"] * len(values))
        for _ in range(2):  # the second run, on warm caches, as the load sees it
            cur.execute(
                f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE bench_statistics({placeholders})",
                [None if value is None else str(value) for value in values],
            )
            (plan,) = cur.fetchone()[0]
    top = plan["Plan"]
    buffers = int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))
    return float(plan["Execution Time"]), buffers
