"""Embedded PostgreSQL and Redis: start, answer, stop, restart, and pick configured URLs."""

from __future__ import annotations

import json
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from stockpile.localstack import (
    EmbeddedPostgres,
    EmbeddedRedis,
    LocalStackError,
    ServerStartError,
    ServiceUnreachableError,
    resolve_services,
    start_postgres,
    start_redis,
)
from stockpile.localstack import redis_server as redis_server_module
from tests.stockpile.clusters import remove_linked_clusters

SECRET = "SEKRET-PASSWORD-42"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def _wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scalar(url: str, sql: str) -> object:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def _execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def _redis(url: str) -> redis.Redis[bytes]:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture(scope="module")
def pg() -> Iterator[EmbeddedPostgres]:
    with start_postgres() as server:
        yield server


@pytest.fixture
def pg_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for PostgreSQL data; as root the cluster it links to is removed afterwards."""
    yield tmp_path
    remove_linked_clusters(tmp_path)


@pytest.fixture
def started_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with start_redis(tmp_path / "redis", persistent=False) as server:
        yield server


def test_postgres_answers_on_its_private_socket_only(pg: EmbeddedPostgres) -> None:
    assert pg.url.startswith("postgresql+psycopg2://postgres@localhost/postgres?host=")
    assert _scalar(pg.url, "SELECT current_setting('server_version_num')::int / 10000") == 18
    assert _scalar(pg.url, "SELECT current_setting('listen_addresses')") == ""
    assert (pg.socket_dir / ".s.PGSQL.5432").is_socket()
    assert pg.socket_dir.stat().st_mode & 0o077 == 0


def test_postgres_stop_then_start_keeps_url_and_data(pg: EmbeddedPostgres) -> None:
    url = pg.create_database("restart_check")
    _execute(url, "CREATE TABLE t AS SELECT 7 AS v")
    pid = pg.pid
    assert pid is not None

    pg.stop()

    assert not pg.running
    assert _wait_dead(pid)
    assert not (pg.socket_dir / ".s.PGSQL.5432").exists()
    with pytest.raises(sa.exc.OperationalError):
        _scalar(url, "SELECT 1")

    pg.start()

    assert pg.url_for("restart_check") == url
    assert pg.pid not in (None, pid)
    assert _scalar(url, "SELECT v FROM t") == 7
    pg.drop_database("restart_check")


def test_postgres_start_while_running_raises(pg: EmbeddedPostgres) -> None:
    with pytest.raises(LocalStackError, match="already runs"):
        pg.start()
    assert _scalar(pg.url, "SELECT 1") == 1


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
    assert _scalar(pg.url, "SELECT 1") == 1


def test_create_database_then_drop_it_while_connected(pg: EmbeddedPostgres) -> None:
    url = pg.create_database("created_db")
    assert _scalar(url, "SELECT current_database()") == "created_db"
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
        _scalar(url, "SELECT 1")
    pg.drop_database("created_db")  # dropping a missing database is not an error


def test_create_database_quotes_unusual_names(pg: EmbeddedPostgres) -> None:
    name = 'Odd "name"; DROP'
    url = pg.create_database(name)
    assert _scalar(url, "SELECT current_database()") == name
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

    assert _wait_dead(pid)
    assert not server.data_dir.exists()


def test_postgres_data_from_another_major_version_is_refused(pg_dir: Path) -> None:
    (pg_dir / "pgdata").mkdir()
    (pg_dir / "pgdata" / "PG_VERSION").write_text("12\n")

    with pytest.raises(ServerStartError, match="PostgreSQL 12 cluster"):
        start_postgres(pg_dir, persistent=True)

    assert (pg_dir / "pgdata" / "PG_VERSION").read_text() == "12\n"


def test_redis_set_get_then_stop_frees_port(started_redis: EmbeddedRedis) -> None:
    client = _redis(started_redis.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert started_redis.url == f"redis://127.0.0.1:{started_redis.port}/0"
    pid = started_redis.pid
    assert pid is not None

    started_redis.stop()

    assert _wait_dead(pid)
    assert not _listening(started_redis.port)
    assert "Ready to accept connections" in started_redis.log_path.read_text()


def test_redis_restart_keeps_data_on_same_port(started_redis: EmbeddedRedis) -> None:
    _redis(started_redis.url).set("k", "kept")
    url = started_redis.url

    started_redis.stop()
    started_redis.start()

    assert started_redis.url == url
    assert _redis(url).get("k") == b"kept"


def test_redis_restart_with_wipe_loses_data(started_redis: EmbeddedRedis) -> None:
    _redis(started_redis.url).set("k", "gone")

    started_redis.stop()
    started_redis.start(wipe=True)

    assert _redis(started_redis.url).get("k") is None


def test_redis_persistent_mode_uses_append_only_file(tmp_path: Path) -> None:
    with start_redis(tmp_path, persistent=True) as server:
        client = _redis(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("k", "durable")
        server.stop()
        assert (tmp_path / "appendonly.aof").stat().st_size > 0
        server.start()
        assert _redis(server.url).get("k") == b"durable"
    assert tmp_path.is_dir()  # a given data_dir is never deleted


def test_redis_start_while_running_raises(started_redis: EmbeddedRedis) -> None:
    with pytest.raises(LocalStackError, match="already running"):
        started_redis.start()


def test_redis_on_taken_port_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = int(blocker.getsockname()[1])

        with pytest.raises(ServerStartError, match=f"127.0.0.1:{port}.*in use"):
            start_redis(tmp_path, port=port)

    assert "Address already in use" in (tmp_path / "redis.log").read_text()


def test_redis_chooses_another_port_when_the_free_one_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = int(blocker.getsockname()[1])
        ports = iter([taken, _closed_port()])
        # Simulates another program grabbing the port between choosing and binding it.
        monkeypatch.setattr(redis_server_module, "free_port", lambda host: next(ports))

        with start_redis(tmp_path) as server:
            assert server.port != taken
            assert _redis(server.url).ping()


def test_redis_second_server_on_same_dir_is_refused(started_redis: EmbeddedRedis) -> None:
    with pytest.raises(ServerStartError, match=f"pid {started_redis.pid}"):
        start_redis(started_redis.data_dir)
    assert _redis(started_redis.url).ping()


def test_resolve_services_unreachable_database_url_raises(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://app:{SECRET}@127.0.0.1:{_closed_port()}/app"

    with pytest.raises(ServiceUnreachableError, match="DATABASE_URL") as caught:
        resolve_services(url, None, data_dir=tmp_path, persistent=True)

    assert SECRET not in str(caught.value)
    assert "app:***@127.0.0.1" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_resolve_services_unreachable_redis_url_raises(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{_closed_port()}/0"

    with pytest.raises(ServiceUnreachableError, match="REDIS_URL") as caught:
        resolve_services(None, url, data_dir=tmp_path, persistent=True)

    assert SECRET not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_resolve_services_uses_reachable_urls_as_is(
    pg: EmbeddedPostgres, started_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    data_dir = tmp_path / "services"
    with resolve_services(pg.url, started_redis.url, data_dir=data_dir) as services:
        assert services.database_url == pg.url
        assert services.redis_url == started_redis.url
        assert services.postgres is None
        assert services.redis is None

    assert not data_dir.exists()
    # Configured servers are left alone.
    assert pg.running
    assert started_redis.running


def test_resolve_services_persistent_embedded_servers_keep_data(pg_dir: Path) -> None:
    with resolve_services(None, None, data_dir=pg_dir, persistent=True) as services:
        assert services.postgres is not None
        assert services.redis is not None
        assert services.database_url == services.postgres.url_for("stockpile")
        _execute(services.database_url, "CREATE TABLE t AS SELECT 'kept' AS v")
        _redis(services.redis_url).set("k", "kept")
        pids = [services.postgres.pid, services.redis.pid]
        redis_port = services.redis.port

    assert all(pid is not None and _wait_dead(pid) for pid in pids)
    assert not _listening(redis_port)

    with resolve_services(None, None, data_dir=pg_dir, persistent=True) as services:
        assert _scalar(services.database_url, "SELECT v FROM t") == "kept"
        assert _redis(services.redis_url).get("k") == b"kept"


_CHILD = """
import json, time
from stockpile.localstack import start_postgres, start_redis
pg, rd = start_postgres(), start_redis()
print(json.dumps({"pids": [pg.pid, rd.pid], "dirs": [str(pg.data_dir), str(rd.data_dir)],
                  "port": rd.port}), flush=True)
time.sleep(120)
"""


def test_servers_stop_when_their_parent_is_killed() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    started: dict[str, Any] = {"dirs": []}
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child did not start its servers"
        started = json.loads(child.stdout.readline())
        pids = [int(pid) for pid in started["pids"]]
        assert all(_alive(pid) for pid in pids)

        child.send_signal(signal.SIGKILL)
        child.wait(10)

        assert all(_wait_dead(pid) for pid in pids)
        assert not _listening(int(started["port"]))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for directory in started["dirs"]:
            shutil.rmtree(directory, ignore_errors=True)
