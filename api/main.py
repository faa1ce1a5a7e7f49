"""The ASGI application: `uvicorn api.main:app`."""

from __future__ import annotations

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.routes import jobs, prices


def create_app() -> FastAPI:
    """Build the application with its routes and error handlers."""
    app = FastAPI(
        title="Stockpile",
        summary="A local, queryable copy of daily stock prices from AlphaVantage.",
        version="0.1.0",
    )
    install_error_handlers(app)
    app.include_router(prices.router)
    app.include_router(jobs.router)
    return app


app = create_app()
