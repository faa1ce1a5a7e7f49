"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from api.redis_clients import get_redis
from api.responses import Envelope, error_doc, ok
from api.responses import error as error_response
from shared.core.db import get_engine

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Envelope[dict[str, str]])
def healthz() -> JSONResponse:
    """The process is up."""
    return ok({"status": "ok"})


def _postgres_ok() -> bool:
    try:
        with get_engine().connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:
        logger.warning("readiness: PostgreSQL unavailable (%s)", type(exc).__name__)
        return False
    return True


def _redis_ok() -> bool:
    try:
        return bool(get_redis().ping())
    except Exception as exc:
        logger.warning("readiness: Redis unavailable (%s)", type(exc).__name__)
        return False


@router.get(
    "/readyz",
    response_model=Envelope[dict[str, str]],
    responses={503: error_doc("A dependency is down")},
)
def readyz() -> JSONResponse:
    """PostgreSQL and Redis both answer; 503 names the ones that do not."""
    checks = {"postgres": _postgres_ok(), "redis": _redis_ok()}
    down = [name for name, healthy in checks.items() if not healthy]
    if down:
        names = " and ".join({"postgres": "PostgreSQL", "redis": "Redis"}[n] for n in down)
        return error_response(503, f"Not ready: {names} unavailable.", is_list=False)
    return ok(dict.fromkeys(checks, "ok"))


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus text: HTTP traffic, jobs by status, AlphaVantage calls and budget."""
    return Response(generate_latest(request.app.state.registry), media_type=CONTENT_TYPE_LATEST)
