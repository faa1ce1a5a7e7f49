"""The embedded PostgreSQL: its private socket, stop and start, databases, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from stockpile.localstack import (
    EmbeddedPostgres,
    LocalStackError,
    ServerStartError,
    start_postgres,
)
from tests.stockpile.localstack.support import (
    execute,
    scalar,
    wait_dead,
)


def test_postgres_answers_on_its_private_socket_only(pg: EmbeddedPostgres) -> None:
    assert pg.url.startswith("postgresql+psycopg2://postgres@localhost/postgres?host=")
    assert scalar(pg.url, "SELECT current_setting('server_version_num')::int / 10000") == 18
    assert scalar(pg.url, "SELECT current_setting('listen_addresses')") == ""
    assert (pg.socket_dir / ".s.PGSQL.5432").is_socket()
    assert pg.socket_dir.stat().st_mode & 0o077 == 0


def test_postgres_stop_then_start_keeps_url_and_data(pg: EmbeddedPostgres) -> None:
    url = pg.create_database("restart_check")
    execute(url, "CREATE TABLE t AS SELECT 7 AS v")
    pid = pg.pid
    assert pid is not None

    pg.stop()

    assert not pg.running
    assert wait_dead(pid)
    assert not (pg.socket_dir / ".s.PGSQL.5432").exists()
    with pytest.raises(sa.exc.OperationalError):
        scalar(url, "SELECT 1")

    pg.start()

    assert pg.url_for("restart_check") == url
    assert pg.pid not in (None, pid)
    assert scalar(url, "SELECT v FROM t") == 7
    pg.drop_database("restart_check")


def test_postgres_start_while_running_raises(pg: EmbeddedPostgres) -> None:
    with pytest.raises(LocalStackError, match="already runs"):
        pg.start()
    assert scalar(pg.url, "SELECT 1") == 1


def test_postgres_start_failure_reports_log_tail(pg: EmbeddedPostgres) -> None:
    config = pg.pgdata / "postgresql.auto.conf"
    original = config.read_text()
    pg.stop()
    config.write_text(original + "shared_buffers = 'plenty'\n")
    try:
        with pytest.raises(ServerStartError, match="shared_buffers") as caught:
            pg.start()
        assert "PostgreSQL exited with status" in str(caught.value)
        assert not pg.running
    finally:
        config.write_text(original)
        pg.start()
    assert scalar(pg.url, "SELECT 1") == 1


def test_create_database_then_drop_it_while_connected(pg: EmbeddedPostgres) -> None:
    url = pg.create_database("created_db")
    assert scalar(url, "SELECT current_database()") == "created_db"
    with pytest.raises(LocalStackError, match="already exists"):
        pg.create_database("created_db")
    assert pg.create_database("created_db", exist_ok=True) == url

    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.connect() as open_connection:
        open_connection.execute(sa.text("SELECT 1"))
        pg.drop_database("created_db")
        with pytest.raises(sa.exc.OperationalError):  # WITH (FORCE) ended the open session
            open_connection.execute(sa.text("SELECT 1"))
    engine.dispose()

    with pytest.raises(sa.exc.OperationalError, match="does not exist"):
        scalar(url, "SELECT 1")
    pg.drop_database("created_db")  # dropping a missing database is not an error


def test_create_database_quotes_unusual_names(pg: EmbeddedPostgres) -> None:
    name = 'Odd "name"; DROP'
    url = pg.create_database(name)
    assert scalar(url, "SELECT current_database()") == name
    pg.drop_database(name)


@pytest.mark.parametrize("name", ["", "x" * 64])
def test_create_database_invalid_name_raises(pg: EmbeddedPostgres, name: str) -> None:
    with pytest.raises(ValueError, match="database name"):
        pg.create_database(name)


def test_postgres_close_removes_throwaway_files_and_process() -> None:
    server = start_postgres()
    pid = server.pid
    assert pid is not None
    assert server.data_dir.is_dir()

    server.close()

    assert wait_dead(pid)
    assert not server.data_dir.exists()


def test_postgres_data_from_another_major_version_is_refused(pg_dir: Path) -> None:
    (pg_dir / "pgdata").mkdir()
    (pg_dir / "pgdata" / "PG_VERSION").write_text("12\n")

    with pytest.raises(ServerStartError, match="PostgreSQL 12 cluster"):
        start_postgres(pg_dir, persistent=True)

    assert (pg_dir / "pgdata" / "PG_VERSION").read_text() == "12\n"
