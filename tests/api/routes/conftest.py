"""Fixtures of the route tests."""

from __future__ import annotations

import pytest
import redis
from sqlmodel import Session

from shared.domain.queue import QUEUE


@pytest.fixture
def empty_queue(redis_client: redis.Redis, session: Session) -> redis.Redis:  # type: ignore[type-arg]
    """The broker's job queue, emptied (with the database, `session`), for a test to read."""
    redis_client.delete(QUEUE)
    return redis_client
