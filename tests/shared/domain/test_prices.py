"""The upsert of parsed rows into financial_data, on real PostgreSQL."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

from sqlalchemy import event, text
from sqlmodel import Session

from shared.domain.prices import upsert_prices
from tests.support import bar, history


def _table(session: Session) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in session.execute(
            text(
                "SELECT symbol, date, open_price, high_price, low_price, close_price, volume,"
                " updated_at FROM financial_data ORDER BY symbol, date"
            )
        )
    ]


def test_upsert_inserts_new_days_and_counts_them(session: Session) -> None:
    bars = [bar("2023-01-03", "10.00", "11.00"), bar("2023-01-04", "11.00", "12.50")]
    result = upsert_prices(session, "IBM", bars)
    session.commit()
    assert (result.inserted, result.updated, result.written) == (2, 0, 2)
    assert [row[:7] for row in _table(session)] == [
        (
            "IBM",
            bars[0].date,
            Decimal("10.00"),
            Decimal("11.00"),
            Decimal("10.00"),
            Decimal("11.00"),
            1000,
        ),
        (
            "IBM",
            bars[1].date,
            Decimal("11.00"),
            Decimal("12.50"),
            Decimal("11.00"),
            Decimal("12.50"),
            1000,
        ),
    ]


def test_upsert_twice_leaves_the_table_unchanged(session: Session) -> None:
    bars = history(30)
    upsert_prices(session, "IBM", bars)
    session.commit()
    before = _table(session)
    again = upsert_prices(session, "IBM", bars)
    session.commit()
    assert (again.inserted, again.updated) == (0, 0)
    assert _table(session) == before  # same rows, same updated_at: nothing rewritten


def test_upsert_replaces_a_changed_close_and_counts_it(session: Session) -> None:
    bars = history(5)
    upsert_prices(session, "IBM", bars)
    session.commit()
    changed = dataclasses.replace(bars[2], close=bars[2].close + Decimal("0.01"))
    result = upsert_prices(
        session, "IBM", [*bars[:2], changed, *bars[3:], bar("2030-01-02", "1", "2")]
    )
    session.commit()
    assert (result.inserted, result.updated) == (1, 1)
    stored = session.execute(
        text("SELECT close_price FROM financial_data WHERE symbol = 'IBM' AND date = :d"),
        {"d": changed.date},
    ).scalar_one()
    assert stored == changed.close


def test_upsert_same_value_with_other_scale_is_not_a_change(session: Session) -> None:
    upsert_prices(session, "IBM", [bar("2023-01-03", "10.5", "11")])
    result = upsert_prices(session, "IBM", [bar("2023-01-03", "10.5000", "11.0000")])
    assert result.written == 0


def test_upsert_keeps_symbols_apart(session: Session) -> None:
    upsert_prices(session, "IBM", history(3))
    result = upsert_prices(session, "AAPL", history(3))
    session.commit()
    assert result.inserted == 3
    assert len(_table(session)) == 6


def test_upsert_of_a_full_history_is_one_statement(session: Session) -> None:
    bars = history(6500)
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = upsert_prices(session, "IBM", bars)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    session.commit()
    assert result.inserted == 6500
    assert len([s for s in statements if "INSERT INTO financial_data" in s]) == 1
    assert session.execute(text("SELECT count(*) FROM financial_data")).scalar_one() == 6500


def test_upsert_of_nothing_writes_nothing(session: Session) -> None:
    assert upsert_prices(session, "IBM", []).written == 0
