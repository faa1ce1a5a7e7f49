"""Ingestion: full histories through the project's upsert against COPY of the same rows."""

from __future__ import annotations

import datetime as dt
import io
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from psycopg2.extensions import connection  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlmodel import Session

from bench.pg import connect
from shared.core.db import make_engine
from shared.core.market_calendar import trading_days
from shared.domain.prices import upsert_prices
from shared.upstream.parser import DailyBar
from stockpile.sandbox.data import generate_bars

logger = logging.getLogger(__name__)

UPSERT_SHARE_TARGET = 0.5
_COLUMNS = "symbol, date, open_price, high_price, low_price, close_price, volume"


@dataclass(frozen=True)
class IngestResult:
    """Rows per second of each way in, and what the unchanged re-upsert wrote."""

    histories: int
    rows: int
    upsert_seconds: float
    copy_seconds: float
    reupsert_seconds: float
    reupsert_written: int
    reupsert_touched_rows: int

    @property
    def upsert_rate(self) -> float:
        """Rows per second through upsert_prices."""
        return self.rows / self.upsert_seconds

    @property
    def copy_rate(self) -> float:
        """Rows per second through COPY."""
        return self.rows / self.copy_seconds

    @property
    def reupsert_rate(self) -> float:
        """Rows per second offered again, unchanged."""
        return self.rows / self.reupsert_seconds

    @property
    def ratio(self) -> float:
        """Upsert rate over COPY rate."""
        return self.upsert_rate / self.copy_rate

    @property
    def met(self) -> bool:
        """Whether the upsert reaches its share of COPY and the re-upsert wrote nothing."""
        return (
            self.ratio >= UPSERT_SHARE_TARGET
            and self.reupsert_written == 0
            and self.reupsert_touched_rows == 0
        )


def full_histories(count: int, days: int, end: dt.date) -> dict[str, list[DailyBar]]:
    """`count` synthetic histories of `days` trading days up to `end` (the sandbox's walk)."""
    calendar = trading_days(end - dt.timedelta(days=days * 3 // 2), end)[-days:]
    histories: dict[str, list[DailyBar]] = {}
    for number in range(1, count + 1):
        symbol = f"H{number:04d}"
        walk = generate_bars(symbol, days)
        histories[symbol] = [
            DailyBar(
                day,
                Decimal(walk.opens[i]).scaleb(-4),
                Decimal(walk.highs[i]).scaleb(-4),
                Decimal(walk.lows[i]).scaleb(-4),
                Decimal(walk.closes[i]).scaleb(-4),
                walk.volumes[i],
            )
            for i, day in enumerate(calendar)
        ]
    return histories


def run_ingest(database_url: str, *, histories: int, days: int, end: dt.date) -> IngestResult:
    """Upsert each history (a commit each, as a job does) and COPY it, then upsert all again.

    Upsert and COPY alternate history by history, so load from elsewhere hits both alike.
    """
    data = full_histories(histories, days, end)
    rows = sum(len(bars) for bars in data.values())
    engine = make_engine(database_url)
    upsert_seconds = copy_seconds = 0.0
    try:
        with connect(database_url) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE financial_data_copy (LIKE financial_data INCLUDING ALL)")
        with connect(database_url, autocommit=False) as copying:
            for symbol, bars in data.items():
                began = time.perf_counter()
                with Session(engine) as session:
                    upsert_prices(session, symbol, bars)
                    session.commit()
                upsert_seconds += time.perf_counter() - began
                began = time.perf_counter()
                _copy(copying, symbol, bars)
                copy_seconds += time.perf_counter() - began
        with engine.connect() as connection:
            marker = connection.execute(text("SELECT clock_timestamp()")).scalar_one()
        began = time.perf_counter()
        written = 0
        for symbol, bars in data.items():
            with Session(engine) as session:
                written += upsert_prices(session, symbol, bars).written
                session.commit()
        reupsert_seconds = time.perf_counter() - began
        with engine.connect() as connection:
            touched = connection.execute(
                text("SELECT count(*) FROM financial_data WHERE updated_at >= :marker"),
                {"marker": marker},
            ).scalar_one()
    finally:
        engine.dispose()
    result = IngestResult(
        histories, rows, upsert_seconds, copy_seconds, reupsert_seconds, written, int(touched)
    )
    logger.info(
        "ingest: upsert %.0f rows/s, COPY %.0f rows/s, unchanged re-upsert %.0f rows/s",
        result.upsert_rate,
        result.copy_rate,
        result.reupsert_rate,
    )
    return result


def _copy(conn: connection, symbol: str, bars: list[DailyBar]) -> None:
    """COPY one history into the empty copy of the table, rendered from the bars, and commit."""
    buffer = io.StringIO(
        "".join(
            f"{symbol}\t{bar.date}\t{bar.open}\t{bar.high}\t{bar.low}\t{bar.close}\t{bar.volume}\n"
            for bar in bars
        )
    )
    with conn.cursor() as cur:
        cur.copy_expert(f"COPY financial_data_copy ({_COLUMNS}) FROM STDIN", buffer)
    conn.commit()
