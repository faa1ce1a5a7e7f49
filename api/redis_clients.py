"""This process's Redis client and the fleet's rate limiter on it (readiness, budget, metrics)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis

from shared.core.settings import get_settings
from shared.domain.audit import audited_call_times
from shared.upstream.factory import make_limiter, make_redis
from shared.upstream.ratelimit import RedisRateLimiter


@lru_cache
def get_redis() -> redis.Redis[Any]:
    """This process's Redis client (readiness and the budget in /metrics)."""
    return make_redis(get_settings())


@lru_cache
def get_limiter() -> RedisRateLimiter:
    """The fleet's rate limiter, read-only here (status for /metrics)."""
    return make_limiter(get_settings(), get_redis(), audited_call_times)
