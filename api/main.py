"""The ASGI application: `uvicorn api.main:app`."""

from __future__ import annotations

from fastapi import FastAPI

from api.body_limit import BodyLimitMiddleware
from api.dashboard import install_dashboard
from api.errors import document_400_not_422, install_error_handlers
from api.lifespan import lifespan
from api.metrics import MetricsMiddleware, build_registry
from api.redis_clients import get_limiter
from api.routes import budget, health, jobs, prices, symbols
from shared.core.logs import configure_logging
from shared.core.settings import get_settings


def create_app() -> FastAPI:
    """Build the application with its routes, error handlers and metrics."""
    configure_logging(get_settings())
    app = FastAPI(
        title="Stockpile",
        summary="A local, queryable copy of daily stock prices from AlphaVantage.",
        version="0.1.0",
        lifespan=lifespan,
        # Served by install_dashboard from the package's own files, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    document_400_not_422(app)
    registry, http_metrics = build_registry(get_limiter)
    app.state.registry = registry
    app.add_middleware(BodyLimitMiddleware)  # inside metrics, so its 413s are counted
    app.add_middleware(MetricsMiddleware, metrics=http_metrics)
    app.include_router(prices.router)
    app.include_router(jobs.router)
    app.include_router(symbols.router)
    app.include_router(budget.router)
    app.include_router(health.router)
    install_dashboard(app)
    return app


app = create_app()
