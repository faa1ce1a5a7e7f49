"""The task base class: owns the clients a worker process keeps between tasks.

Celery's idiom (mozilla/ichnaea does the same): a `Task` base class holds the resources and
builds them on first use, so no task reaches for module globals. They live on the base class,
so every task of a process shares one AlphaVantage client (one HTTP pool), one limiter and one
Redis client; the prefork fork clears them, since pooled connections must never cross it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import redis
from celery import Task
from celery.signals import worker_process_init, worker_process_shutdown

from shared.core.db import dispose_engine
from shared.core.settings import get_settings
from shared.domain.audit import audited_call_times
from shared.upstream.factory import Upstream, make_redis, make_upstream


class ResourceTask(Task):  # type: ignore[misc]  # Celery is untyped
    """Base of the tasks: `self.upstream` and `self.redis`, made once per worker process."""

    _upstream: ClassVar[Upstream | None] = None
    _redis: ClassVar[redis.Redis[Any] | None] = None

    @property
    def upstream(self) -> Upstream:
        """AlphaVantage and the fleet's rate limiter."""
        if ResourceTask._upstream is None:
            ResourceTask._upstream = make_upstream(get_settings(), audited_call_times)
        return ResourceTask._upstream

    @property
    def redis(self) -> redis.Redis[Any]:
        """This process's Redis client (dispatcher follow-ups)."""
        if ResourceTask._redis is None:
            ResourceTask._redis = make_redis(get_settings())
        return ResourceTask._redis

    @staticmethod
    def forget_resources() -> None:
        """Drop the clients inherited through a fork (the parent keeps using its own)."""
        ResourceTask._upstream = None
        ResourceTask._redis = None

    @staticmethod
    def close_resources() -> None:
        """Release the HTTP connections when the process stops."""
        if ResourceTask._upstream is not None:
            ResourceTask._upstream.close()


@worker_process_init.connect
def _reset_after_fork(**_: Any) -> None:
    dispose_engine()
    ResourceTask.forget_resources()


@worker_process_shutdown.connect
def _close_resources(**_: Any) -> None:
    ResourceTask.close_resources()
