"""price_text, the SQL that renders stored numerics as the contract's price strings."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from shared.domain.prices import price_text


def contract_price(value: Decimal) -> str:
    """The contract's rule, spelled out: at least two decimals, no trailing zeros beyond."""
    decimals = max(2, -value.normalize().as_tuple().exponent)  # type: ignore[operator]
    return format(value.quantize(Decimal(1).scaleb(-decimals)), "f")


def rendered(session: Session, stored: str) -> str:
    sql = f"SELECT {price_text('v')} FROM (SELECT CAST(:v AS numeric) AS v) AS t"
    return str(session.execute(text(sql), {"v": stored}).scalar_one())


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    unscaled=st.integers(min_value=-(10**24), max_value=10**24),
    scale=st.integers(min_value=0, max_value=14),
)
def test_price_text_follows_the_contract_rule(session: Session, unscaled: int, scale: int) -> None:
    value = Decimal(unscaled).scaleb(-scale)
    assert rendered(session, format(value, "f")) == contract_price(value)


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("153.08", "153.08"),
        ("170.1000", "170.10"),
        ("0.1234", "0.1234"),
        ("125.0700", "125.07"),
        ("10.015", "10.015"),
        ("12.34500", "12.345"),
        ("100", "100.00"),
        ("170.0000", "170.00"),
        ("0", "0.00"),
        ("1e2", "100.00"),
        ("1e20", "100000000000000000000.00"),
        ("1e-10", "0.0000000001"),
        ("-2.50", "-2.50"),
    ],
)
def test_price_text_of_stored_numerics(session: Session, stored: str, shown: str) -> None:
    assert rendered(session, stored) == shown
