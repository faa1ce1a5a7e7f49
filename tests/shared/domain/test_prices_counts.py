"""Per-symbol row counts kept by triggers (migration 0003)."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

from shared.domain.prices import upsert_prices
from tests.support import history


def _counts(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT symbol, rows FROM financial_data_counts WHERE rows <> 0"))
    return {str(symbol): int(count) for symbol, count in rows}


def _actual(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT symbol, count(*) FROM financial_data GROUP BY symbol"))
    return {str(symbol): int(count) for symbol, count in rows}


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
