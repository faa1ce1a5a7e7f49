"""Fixtures of the domain tests."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlmodel import Session


@pytest.fixture
def engine(session: Session) -> Engine:
    """The suite's engine, on the emptied tables of `session`."""
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return engine
