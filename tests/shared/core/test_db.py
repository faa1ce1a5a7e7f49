"""The engine's connection checks: idle connections are pinged and replaced, busy ones are not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from shared.core import db


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url, pool_size=1)
    yield engine
    engine.dispose()


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    admin = create_engine(database_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            assert connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            # The backend is gone once it no longer shows in pg_stat_activity.
            for _ in range(100):
                gone = connection.execute(
                    text("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": pid},
                ).scalar_one()
                if gone:
                    return
            raise AssertionError(f"backend {pid} still alive")
    finally:
        admin.dispose()


def test_a_connection_that_died_while_idle_is_replaced_before_use(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend_pid(engine)
    _terminate(database_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)  # every checkout counts as idle

    second = _backend_pid(engine)  # no error reaches the caller

    assert second != first


def test_a_connection_in_steady_use_is_not_pinged(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _backend_pid(engine)
    _terminate(database_url, first)
    monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 3600.0)

    # Without a ping the dead connection is handed out and its first statement fails ...
    with pytest.raises(OperationalError) as failed:
        _backend_pid(engine)
    assert failed.value.connection_invalidated
    # ... after which the pool has a live connection again.
    assert _backend_pid(engine) != first
