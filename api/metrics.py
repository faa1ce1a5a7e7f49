"""Prometheus metrics: HTTP traffic measured here, fleet state read at scrape time.

Fleet-wide numbers (jobs by status, AlphaVantage calls by outcome, remaining budget) are read
from PostgreSQL and Redis when Prometheus scrapes, so they are right however many workers run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.core.db import session_scope
from shared.core.models import JobStatus
from shared.domain.tallies import API_CALLS, API_CALLS_DELETED, JOBS, JOBS_DELETED, tallies
from shared.upstream.ratelimit import RedisRateLimiter

logger = logging.getLogger(__name__)


class HttpMetrics:
    """Request counts and latencies by method, route template and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "stockpile_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "stockpile_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


class MetricsMiddleware:
    """Pure ASGI middleware (no per-request task or body copy) that records HttpMetrics."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


class FleetCollector(Collector):
    """Jobs by status, AlphaVantage calls by outcome and the remaining budget, at scrape time."""

    def __init__(self, limiter: Callable[[], RedisRateLimiter]) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        yield from self._from_database()
        yield from self._from_redis()

    def _from_database(self) -> Iterator[Metric]:
        try:
            with session_scope() as session:
                counts = tallies(session, JOBS, JOBS_DELETED, API_CALLS, API_CALLS_DELETED)
        except Exception as exc:  # a scrape must not fail because one source is down
            logger.warning("metrics: database unavailable (%s)", type(exc).__name__)
            return
        # Totals include what retention deleted, so they never go down when it runs.
        by_status = _added(counts[JOBS], counts[JOBS_DELETED])
        jobs = GaugeMetricFamily(
            "stockpile_jobs",
            "Jobs by status: in flight now, or finished ever (including those retention deleted)",
            labels=["status"],
        )
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        calls = GaugeMetricFamily(
            "stockpile_alphavantage_calls",
            "AlphaVantage calls made ever, by outcome (the audit log and what retention deleted)",
            labels=["outcome"],
        )
        for outcome, count in sorted(_added(counts[API_CALLS], counts[API_CALLS_DELETED]).items()):
            calls.add_metric([outcome], count)
        yield calls
        deleted = CounterMetricFamily(
            "stockpile_retention_deleted_rows",
            "Rows the retention task deleted (finished jobs, audited calls)",
            labels=["table"],
        )
        deleted.add_metric(["jobs"], sum(counts[JOBS_DELETED].values()))
        deleted.add_metric(["api_calls"], sum(counts[API_CALLS_DELETED].values()))
        yield deleted

    def _from_redis(self) -> Iterator[Metric]:
        try:
            status = self._limiter().status()
        except Exception as exc:
            logger.warning("metrics: Redis unavailable (%s)", type(exc).__name__)
            return
        remaining = GaugeMetricFamily(
            "stockpile_alphavantage_budget_remaining",
            "AlphaVantage calls still allowed in each rate window",
            labels=["window"],
        )
        used = GaugeMetricFamily(
            "stockpile_alphavantage_budget_used",
            "AlphaVantage calls made in each rate window",
            labels=["window"],
        )
        for window in status.windows:
            remaining.add_metric([window.window.label], window.remaining)
            used.add_metric([window.window.label], window.used)
        yield remaining
        yield used
        yield GaugeMetricFamily(
            "stockpile_alphavantage_cooldown_seconds",
            "Seconds left in a fleet-wide cooldown after an upstream throttle reply",
            value=status.cooldown_remaining,
        )


def _added(*parts: dict[str, int]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for key, count in part.items():
            total[key] = total.get(key, 0) + count
    return total


def build_registry(
    limiter: Callable[[], RedisRateLimiter],
) -> tuple[CollectorRegistry, HttpMetrics]:
    """A registry with the HTTP metrics and the fleet collector."""
    registry = CollectorRegistry()
    http = HttpMetrics(registry)
    registry.register(FleetCollector(limiter))
    return registry, http
