"""Migration 0005: the tallies start exact on a database that already holds jobs and calls, and
its update triggers watch the counted column only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from stockpile.migrations import alembic_config


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """An empty database of its own on the suite's server (migrated by the test), then dropped."""
    name = f"stockpile_migration_{uuid.uuid4().hex[:8]}"
    server = make_url(database_url)
    admin = create_engine(
        server.set(database="postgres"), isolation_level="AUTOCOMMIT", poolclass=NullPool
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def tallies(engine: Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT kind, key, sum(delta) FROM row_tallies GROUP BY 1, 2")
        ).all()
    return {(kind, key): int(total) for kind, key, total in rows if total}


def test_0005_counts_existing_rows_and_downgrades_cleanly(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, "0004")
    engine = create_engine(scratch_url, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO jobs (id, symbol, status, source, attempts)"
                " SELECT gen_random_uuid(), 'M' || n, CASE WHEN n <= 3 THEN 'failed'"
                " ELSE 'succeeded' END, 'api', 1 FROM generate_series(1, 10) n"
            )
        )
        conn.execute(
            text(
                "INSERT INTO api_calls (called_at, symbol, outputsize, outcome)"
                " SELECT now(), 'M' || n, 'compact', 'ok' FROM generate_series(1, 4) n"
            )
        )
    try:
        command.upgrade(config, "head")
        expected = {("jobs", "failed"): 3, ("jobs", "succeeded"): 7, ("api_calls", "ok"): 4}
        assert tallies(engine) == expected
        with engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET status = 'queued' WHERE symbol = 'M1'"))
            conn.execute(text("DELETE FROM api_calls WHERE symbol = 'M2'"))
        assert tallies(engine) == {
            ("jobs", "failed"): 2,
            ("jobs", "queued"): 1,
            ("jobs", "succeeded"): 7,
            ("api_calls", "ok"): 3,
        }
        command.downgrade(config, "0004")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT to_regclass('row_tallies')")).scalar() is None
            # The tables work without their triggers again.
            conn.execute(text("DELETE FROM jobs"))
        command.upgrade(config, "head")
        assert tallies(engine) == {("api_calls", "ok"): 3}
    finally:
        engine.dispose()


def test_update_triggers_of_the_counted_tables_fire_for_the_counted_column_only(
    session: Session,
) -> None:
    # `UPDATE OF status`, not every UPDATE with a WHEN clause: a lease renewal (which sets
    # lease_expires_at alone) must not even start a trigger.
    rows = session.execute(
        text(
            "SELECT c.relname AS table_name, array("
            "   SELECT a.attname FROM unnest(t.tgattr::int2[]) AS n(attnum)"
            "   JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = n.attnum"
            " ) AS columns"
            " FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE NOT t.tgisinternal AND c.relname IN ('jobs', 'api_calls')"
            "   AND t.tgtype & 16 <> 0"  # TRIGGER_TYPE_UPDATE
        )
    ).all()
    assert sorted((row.table_name, row.columns) for row in rows) == [
        ("api_calls", ["outcome"]),
        ("jobs", ["status"]),
    ]
