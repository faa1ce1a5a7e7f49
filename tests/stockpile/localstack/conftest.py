"""Fixtures of the embedded-server tests: a server per module, fresh ones per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stockpile.localstack import (
    EmbeddedPostgres,
    EmbeddedRedis,
    start_postgres,
    start_redis,
)
from tests.stockpile.localstack.support import (
    remove_linked_clusters,
)


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
