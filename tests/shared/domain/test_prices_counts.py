"""Per-symbol row counts kept by triggers (migration 0003) and the page query that reads them."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
from sqlalchemy import text
from sqlmodel import Session

from shared.core.db import asyncpg_dsn
from shared.domain.price_pages import PricePage, price_page
from shared.domain.prices import PriceFilter, upsert_prices
from tests.support import history


def _counts(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT symbol, rows FROM financial_data_counts WHERE rows <> 0"))
    return {str(symbol): int(count) for symbol, count in rows}


def _actual(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT symbol, count(*) FROM financial_data GROUP BY symbol"))
    return {str(symbol): int(count) for symbol, count in rows}


def _page(database_url: str, filters: PriceFilter, *, limit: int, offset: int) -> PricePage:
    """price_page on its own asyncpg connection (no pool, no retry)."""

    async def read() -> PricePage:
        connection = await asyncpg.connect(asyncpg_dsn(database_url))
        try:
            return await price_page(connection.fetch, filters, limit=limit, offset=offset)
        finally:
            await connection.close()

    return asyncio.run(read())


def test_counts_follow_inserts_and_ignore_unchanged_upserts(session: Session) -> None:
    upsert_prices(session, "IBM", history(30))
    upsert_prices(session, "AAPL", history(12))
    session.commit()
    upsert_prices(session, "IBM", history(35))
    session.commit()
    assert _counts(session) == {"IBM": 35, "AAPL": 12} == _actual(session)


def test_counts_follow_deletes_symbol_changes_and_truncate(session: Session) -> None:
    upsert_prices(session, "IBM", history(20))
    upsert_prices(session, "AAPL", history(10))
    session.commit()
    session.execute(text("DELETE FROM financial_data WHERE symbol = 'IBM' AND date < '2000-01-10'"))
    session.execute(text("UPDATE financial_data SET symbol = 'MSFT' WHERE symbol = 'AAPL'"))
    session.commit()
    assert _counts(session) == {"IBM": 15, "MSFT": 10} == _actual(session)
    session.execute(text("TRUNCATE financial_data"))
    session.commit()
    assert _counts(session) == {}


def test_counts_of_a_rolled_back_write_are_rolled_back_too(session: Session) -> None:
    upsert_prices(session, "IBM", history(5))
    session.rollback()
    assert _counts(session) == {}


def test_page_count_matches_with_and_without_dates(session: Session, database_url: str) -> None:
    upsert_prices(session, "IBM", history(40))
    upsert_prices(session, "AAPL", history(25))
    session.commit()
    everything = _page(database_url, PriceFilter(), limit=10, offset=60)
    assert everything.count == 65
    assert [(row[0], row[1]) for row in everything.rows] == [
        ("IBM", day) for day in [bar.date for bar in history(40)][35:]
    ]
    ibm = _page(database_url, PriceFilter(symbol="IBM"), limit=5, offset=0)
    assert ibm.count == 40
    assert len(ibm.rows) == 5
    ranged = PriceFilter(symbol="AAPL", start_date=dt.date(2000, 1, 10))
    assert _page(database_url, ranged, limit=5, offset=0).count == 25 - 5
    both_ends = PriceFilter(start_date=dt.date(2000, 1, 10), end_date=dt.date(2000, 1, 14))
    assert _page(database_url, both_ends, limit=3, offset=0).count == 2 * 5
    unknown = _page(database_url, PriceFilter(symbol="MSFT"), limit=5, offset=0)
    assert (unknown.count, unknown.rows) == (0, [])


def test_page_past_the_end_is_empty_with_the_true_count(
    session: Session, database_url: str
) -> None:
    upsert_prices(session, "IBM", history(7))
    session.commit()
    past = _page(database_url, PriceFilter(symbol="IBM"), limit=5, offset=10)
    assert (past.count, past.rows) == (7, [])
