"""The embedded Redis: start, answer, stop, restart, persistence, taken ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from stockpile.localstack import (
    EmbeddedRedis,
    LocalStackError,
    ServerStartError,
    start_redis,
)
from stockpile.localstack import redis_server as redis_server_module
from tests.stockpile.localstack.support import (
    closed_port,
    listening,
    redis_at,
    wait_dead,
)


def test_redis_set_get_then_stop_frees_port(started_redis: EmbeddedRedis) -> None:
    client = redis_at(started_redis.url)
    client.set("k", "v")
    assert client.get("k") == b"v"
    assert started_redis.url == f"redis://127.0.0.1:{started_redis.port}/0"
    pid = started_redis.pid
    assert pid is not None

    started_redis.stop()

    assert wait_dead(pid)
    assert not listening(started_redis.port)
    assert "Ready to accept connections" in started_redis.log_path.read_text()


def test_redis_restart_keeps_data_on_same_port(started_redis: EmbeddedRedis) -> None:
    redis_at(started_redis.url).set("k", "kept")
    url = started_redis.url

    started_redis.stop()
    started_redis.start()

    assert started_redis.url == url
    assert redis_at(url).get("k") == b"kept"


def test_redis_restart_with_wipe_loses_data(started_redis: EmbeddedRedis) -> None:
    redis_at(started_redis.url).set("k", "gone")

    started_redis.stop()
    started_redis.start(wipe=True)

    assert redis_at(started_redis.url).get("k") is None


def test_redis_persistent_mode_uses_append_only_file(tmp_path: Path) -> None:
    with start_redis(tmp_path, persistent=True) as server:
        client = redis_at(server.url)
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        client.set("k", "durable")
        server.stop()
        assert (tmp_path / "appendonly.aof").stat().st_size > 0
        server.start()
        assert redis_at(server.url).get("k") == b"durable"
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
        ports = iter([taken, closed_port()])
        # Simulates another program grabbing the port between choosing and binding it.
        monkeypatch.setattr(redis_server_module, "free_port", lambda host: next(ports))

        with start_redis(tmp_path) as server:
            assert server.port != taken
            assert redis_at(server.url).ping()


def test_redis_second_server_on_same_dir_is_refused(started_redis: EmbeddedRedis) -> None:
    with pytest.raises(ServerStartError, match=f"pid {started_redis.pid}"):
        start_redis(started_redis.data_dir)
    assert redis_at(started_redis.url).ping()
