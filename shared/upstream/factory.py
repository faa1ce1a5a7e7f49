"""AlphaVantage as the fleet shares it: the client, the one rate limiter, and what we learnt.

The limiter re-seeds itself from the audit log after Redis loses its data; the log is a domain
table, so the caller hands its reader in (`CallHistory`) and this wing stays below the domain.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis

from shared.core.rate_windows import parse_rate_limits
from shared.core.settings import Settings
from shared.upstream.client import AlphaVantageClient
from shared.upstream.ratelimit import RedisRateLimiter, redis_must_answer

# Unix times of the calls made within the given time (the audit log, `shared.domain.audit`).
CallHistory = Callable[[timedelta], Iterable[float]]

LIMITER_KEY_PREFIX = "stockpile:ratelimit"
# AlphaVantage counts a call when it arrives; request latency varies by some milliseconds, so
# windows are held this much longer than nominal to never look like a burst upstream.
LIMITER_MARGIN_SECONDS = 0.25


class FullHistoryMemory:
    """Remembers, fleet-wide, that the key cannot get `outputsize=full` (re-checked daily)."""

    KEY = "stockpile:alphavantage:full_unavailable"
    TTL_SECONDS = 86_400

    def __init__(self, redis_client: redis.Redis[Any]) -> None:
        self._redis = redis_client

    def unavailable(self) -> bool:
        """Whether a premium-only reply to `full` was seen within the last day."""
        with redis_must_answer():
            return bool(self._redis.exists(self.KEY))

    def remember_unavailable(self) -> None:
        """Record a premium-only reply to `full`."""
        with redis_must_answer():
            self._redis.set(self.KEY, "1", ex=self.TTL_SECONDS)


@dataclass(frozen=True, slots=True)
class Upstream:
    """AlphaVantage and the fleet's budget for it."""

    client: AlphaVantageClient
    limiter: RedisRateLimiter
    full_history: FullHistoryMemory

    def close(self) -> None:
        """Release the HTTP connections."""
        self.client.close()


def make_redis(settings: Settings) -> redis.Redis[Any]:
    """A Redis client with short timeouts, so an outage fails fast instead of hanging."""
    return redis.Redis.from_url(
        settings.require_redis_url(),
        socket_timeout=5,
        socket_connect_timeout=3,
        health_check_interval=30,
    )


def make_limiter(
    settings: Settings, redis_client: redis.Redis[Any], history: CallHistory
) -> RedisRateLimiter:
    """The fleet's limiter; after a Redis data loss it re-seeds itself from `history`."""
    windows = parse_rate_limits(settings.alphavantage_rate_limits)
    longest = timedelta(seconds=max(window.seconds for window in windows))
    return RedisRateLimiter(
        redis_client,
        windows,
        history=lambda: history(longest),
        key_prefix=LIMITER_KEY_PREFIX,
        margin_seconds=LIMITER_MARGIN_SECONDS,
    )


def make_upstream(settings: Settings, history: CallHistory) -> Upstream:
    """Everything a run needs to call AlphaVantage, built from the settings."""
    redis_client = make_redis(settings)
    return Upstream(
        client=AlphaVantageClient(
            base_url=settings.alphavantage_base_url,
            api_key=settings.alphavantage_api_key,
            timeout=settings.alphavantage_timeout_seconds,
        ),
        limiter=make_limiter(settings, redis_client, history),
        full_history=FullHistoryMemory(redis_client),
    )
