"""Fixtures of the domain tests."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from shared.domain.prices import upsert_prices
from tests.shared.domain.prices_data import FIRST_DAY, LAST_DAY, SYMBOLS, bars, weekdays


@pytest.fixture
def engine(session: Session) -> Engine:
    """The suite's engine, on the emptied tables of `session`."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return engine


@pytest.fixture
def stored(session: Session) -> Session:
    """Each symbol on most weekdays of 2019-11..2022-02 (a few missing), random prices."""
    rng = random.Random(16)
    for symbol in SYMBOLS:
        days = [d for d in weekdays(FIRST_DAY, LAST_DAY) if rng.random() > 0.05]
        upsert_prices(session, symbol, bars(rng, days))
    session.commit()
    return session
