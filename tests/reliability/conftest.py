"""Fixtures of the reliability scenarios."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from tests.reliability.harness import clear_tracked_symbols


@pytest.fixture
def engine(session: Session) -> Engine:
    """The suite's engine, on emptied tables (`session`) with no tracked symbol for beat."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    clear_tracked_symbols(engine)
    return engine
