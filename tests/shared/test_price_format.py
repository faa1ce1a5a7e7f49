"""format_price on PostgreSQL's text of a numeric: the contract's price strings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from shared.prices import format_price


def contract_price(value: Decimal) -> str:
    """The contract's rule, spelled out: at least two decimals, no trailing zeros beyond."""
    decimals = max(2, -value.normalize().as_tuple().exponent)  # type: ignore[operator]
    return format(value.quantize(Decimal(1).scaleb(-decimals)), "f")


@given(
    unscaled=st.integers(min_value=-(10**24), max_value=10**24),
    scale=st.integers(min_value=0, max_value=14),
)
def test_format_price_follows_the_contract_rule(unscaled: int, scale: int) -> None:
    value = Decimal(unscaled).scaleb(-scale)
    # PostgreSQL prints a numeric with exactly its scale, never with an exponent.
    assert format_price(format(value, "f")) == contract_price(value)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("153.08", "153.08"),
        ("170.1000", "170.10"),
        ("0.1234", "0.1234"),
        ("125.0700", "125.07"),
        ("10.015", "10.015"),
        ("100", "100.00"),
        ("0", "0.00"),
        ("1e20", "100000000000000000000.00"),
        ("1e-10", "0.0000000001"),
        ("-2.50", "-2.50"),
    ],
)
def test_format_price_of_postgresql_text(session: Session, stored: str, shown: str) -> None:
    as_text = session.execute(text("SELECT CAST(:v AS numeric)::text"), {"v": stored}).scalar_one()
    assert format_price(as_text) == shown
