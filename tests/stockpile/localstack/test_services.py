"""Choosing the servers: configured URLs that answer, or embedded servers that keep their data."""

from __future__ import annotations

from pathlib import Path

import pytest

from stockpile.localstack import (
    EmbeddedPostgres,
    EmbeddedRedis,
    ServiceUnreachableError,
    resolve_services,
)
from tests.stockpile.localstack.support import (
    closed_port,
    execute,
    listening,
    redis_at,
    scalar,
    wait_dead,
)

SECRET = "SEKRET-PASSWORD-42"


def test_resolve_services_unreachable_database_url_raises(tmp_path: Path) -> None:
    url = f"postgresql+psycopg2://app:{SECRET}@127.0.0.1:{closed_port()}/app"

    with pytest.raises(ServiceUnreachableError, match="DATABASE_URL") as caught:
        resolve_services(url, None, data_dir=tmp_path, persistent=True)

    assert SECRET not in str(caught.value)
    assert "app:***@127.0.0.1" in str(caught.value)
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_resolve_services_unreachable_redis_url_raises(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{closed_port()}/0"

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
        execute(services.database_url, "CREATE TABLE t AS SELECT 'kept' AS v")
        redis_at(services.redis_url).set("k", "kept")
        pids = [services.postgres.pid, services.redis.pid]
        redis_port = services.redis.port

    assert all(pid is not None and wait_dead(pid) for pid in pids)
    assert not listening(redis_port)

    with resolve_services(None, None, data_dir=pg_dir, persistent=True) as services:
        assert scalar(services.database_url, "SELECT v FROM t") == "kept"
        assert redis_at(services.redis_url).get("k") == b"kept"
