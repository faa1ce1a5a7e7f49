"""What the embedded-server tests share: process and port probes, one-off statements, clean-up."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import redis
import sqlalchemy as sa
from sqlalchemy.pool import NullPool


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def wait_dead(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scalar(url: str, sql: str) -> object:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            return conn.execute(sa.text(sql)).scalar()
    finally:
        engine.dispose()


def execute(url: str, sql: str) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


def redis_at(url: str) -> redis.Redis[bytes]:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def remove_linked_clusters(folder: Path) -> None:
    """Delete `folder` and, as root, the clusters its `pgdata` links point to."""
    for link in folder.rglob("pgdata"):
        if link.is_symlink():
            shutil.rmtree(link.resolve().parent, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)
