"""The response envelope of CONTRACT.md: `data`, optional `pagination`, and `info.error`."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel

T = TypeVar("T")


class Info(BaseModel):
    """`error` is empty on success and a human-readable sentence otherwise."""

    error: str = ""


class Pagination(BaseModel):
    """Where a page sits in the full result."""

    count: int
    page: int
    limit: int
    pages: int


class Envelope(BaseModel, Generic[T]):
    """A single resource."""

    data: T
    info: Info


class ListEnvelope(BaseModel, Generic[T]):
    """A page of a list."""

    data: list[T]
    pagination: Pagination
    info: Info


class ErrorEnvelope(BaseModel):
    """An error answer; `data` is `[]` on list endpoints and `null` elsewhere."""

    data: list[Any] | None
    info: Info


def utc_timestamp(value: datetime | None) -> str | None:
    """A timestamp as the API shows it: UTC, second precision, `Z` (2026-11-26T12:00:00Z)."""
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# OpenAPI `responses=` entries for routes, keyed by status code.
Responses = dict[int | str, dict[str, Any]]


def error_doc(description: str) -> dict[str, Any]:
    """An OpenAPI `responses=` entry for an error answered in the envelope."""
    return {"model": ErrorEnvelope, "description": description}


# Every route reading the database can answer these two.
READ_ERRORS: Responses = {
    400: error_doc("A parameter is invalid; `info.error` names it"),
    503: error_doc("The database is unavailable"),
}
# Every route behind the bearer token can answer these.
WRITE_ERRORS: Responses = {**READ_ERRORS, 401: error_doc("Missing or wrong bearer token")}


def created_or_existing(
    envelope: type[BaseModel], *, created: int, existing: str, errors: Responses = WRITE_ERRORS
) -> dict[str, Any]:
    """Route arguments of a write that answers `created` with what it made, or 200 with the
    resource already there (`existing` says when), both in `envelope`."""
    return {
        "status_code": created,
        "response_model": envelope,
        "responses": {200: {"model": envelope, "description": existing}, **errors},
    }


def pagination(count: int, page: int, limit: int) -> dict[str, int]:
    """The pagination block; `pages` is ceil(count / limit), 0 when nothing matches."""
    return {"count": count, "page": page, "limit": limit, "pages": math.ceil(count / limit)}


def ok(data: Any, *, status_code: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    """A successful single-resource answer."""
    return JSONResponse(
        {"data": data, "info": {"error": ""}}, status_code=status_code, headers=headers
    )


def ok_list(data: list[Any], *, count: int, page: int, limit: int) -> JSONResponse:
    """A successful page of a list."""
    return JSONResponse(
        {"data": data, "pagination": pagination(count, page, limit), "info": {"error": ""}}
    )


def error(
    status_code: int, message: str, *, is_list: bool, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error answer in the envelope."""
    return JSONResponse(
        {"data": [] if is_list else None, "info": {"error": message}},
        status_code=status_code,
        headers=headers,
    )
