"""Every error becomes the contract's envelope here, and nowhere else."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.responses import ListEnvelope, error
from shared.core.db import is_connection_error

logger = logging.getLogger(__name__)

DATABASE_UNAVAILABLE = "The database is unavailable; try again shortly."

# SQLSTATE classes of a server that cannot serve now, whatever the query: connection exception
# (08), insufficient resources (53: too many connections, out of memory, disk full), operator
# intervention (57: shutting down, starting up, statement timeout) and system error (58). The
# same errors psycopg2 raises as OperationalError, which the SQLAlchemy handler maps to 503.
_UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})


class ApiError(Exception):
    """An expected failure with its status code and a sentence for `info.error`."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers


class BadRequest(ApiError):
    """400: the request names something invalid."""

    def __init__(self, message: str):
        super().__init__(400, message)


class NotFound(ApiError):
    """404: the resource does not exist."""

    def __init__(self, message: str):
        super().__init__(404, message)


class Unauthorized(ApiError):
    """401: no token or a wrong one."""

    def __init__(self, message: str = "Missing or invalid bearer token."):
        super().__init__(401, message, headers={"WWW-Authenticate": "Bearer"})


class ServiceUnavailable(ApiError):
    """503: a backing service (PostgreSQL, Redis) is down."""

    def __init__(self, message: str):
        super().__init__(503, message, headers={"Retry-After": "5"})


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether an asyncpg read failed because PostgreSQL cannot answer now, not the statement."""
    if isinstance(exc, asyncpg.PostgresError):
        return str(exc.sqlstate)[:2] in _UNAVAILABLE_SQLSTATE_CLASSES
    if isinstance(exc, asyncpg.InterfaceError):
        # A closed connection or pool; its subclasses are bugs (configuration, unsupported).
        return type(exc) is asyncpg.InterfaceError
    # Refused, reset, no such socket file, unresolvable host; TimeoutError is a connect or
    # pool wait that ran out.
    return isinstance(exc, OSError | TimeoutError)


def _is_list_request(request: Request) -> bool:
    """Whether the matched route answers a list (then error `data` is `[]`, else `null`)."""
    response_model = getattr(request.scope.get("route"), "response_model", None)
    return isinstance(response_model, type) and issubclass(response_model, ListEnvelope)


def describe_validation_error(errors: Sequence[Any]) -> str:
    """One sentence naming the first offending parameter or body field."""
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path", "body")]
    name = ".".join(location) or "body"
    if first.get("type") == "missing":
        return f"Parameter '{name}' is required."
    message = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"Invalid '{name}': {message}."


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception type to the envelope with the right status code."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(
            exc.status_code, exc.message, is_list=_is_list_request(request), headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = describe_validation_error(exc.errors())
        return error(400, message, is_list=_is_list_request(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return error(
            exc.status_code, str(exc.detail), is_list=_is_list_request(request), headers=headers
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        if not isinstance(exc, DBAPIError) or is_connection_error(exc):
            logger.warning("database unavailable: %s", type(exc).__name__)
            return error(
                503,
                DATABASE_UNAVAILABLE,
                is_list=_is_list_request(request),
                headers={"Retry-After": "5"},
            )
        logger.exception("database error")
        return error(500, "Internal server error.", is_list=_is_list_request(request))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, _exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error(500, "Internal server error.", is_list=_is_list_request(request))


def document_400_not_422(app: FastAPI) -> None:
    """Drop the 422 responses FastAPI adds to the OpenAPI schema: bad input answers 400 here
    (see `install_error_handlers`), and a client generated from the schema should expect that."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()  # FastAPI caches it in app.openapi_schema; edited in place
        for operations in schema["paths"].values():
            for operation in operations.values():
                operation.get("responses", {}).pop("422", None)
        schemas = schema.get("components", {}).get("schemas", {})
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
