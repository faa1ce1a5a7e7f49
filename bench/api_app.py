"""The API as deployed plus bench-only routes that return a constant body of any size.

Served by the bench's own uvicorn launcher (`uvicorn bench.api_app:app`); `api/` stays untouched.
`/_bench/constant/{size}` is the framework's ceiling: async, no parameters, no work.
`/_bench/validated_constant/{size}` takes the listing's query parameters, validated as the real
read routes validate them (also `async def`): the ceiling of any route with those parameters,
so the gap between the two constants is what FastAPI's parameter handling costs.
The app's lifespan (the read pool) runs as it does for `api.main:app`.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Query, Response

from api.main import app
from api.params import IsoDate, Symbol

_ENVELOPE = b'{"data":"","info":{"error":""}}'


@lru_cache(maxsize=64)
def constant_body(size: int) -> bytes:
    """A JSON envelope of exactly `size` bytes (at least the empty envelope's size)."""
    filler = max(0, size - len(_ENVELOPE))
    return b'{"data":"' + b"x" * filler + b'","info":{"error":""}}'


async def constant(size: int) -> Response:
    """The same bytes every time: no database, no validation beyond the path, no serialization."""
    return Response(constant_body(size), media_type="application/json")


async def validated_constant(
    size: int,
    _start_date: Annotated[IsoDate | None, Query(alias="start_date")] = None,
    _end_date: Annotated[IsoDate | None, Query(alias="end_date")] = None,
    _symbol: Annotated[Symbol | None, Query(alias="symbol")] = None,
    _limit: Annotated[int, Query(alias="limit", ge=1, le=1000)] = 5,
    _page: Annotated[int, Query(alias="page", ge=1)] = 1,
) -> Response:
    """The same bytes, after the real routes' parameter validation."""
    return Response(constant_body(size), media_type="application/json")


app.add_api_route("/_bench/constant/{size}", constant, methods=["GET"], include_in_schema=False)
app.add_api_route(
    "/_bench/validated_constant/{size}",
    validated_constant,
    methods=["GET"],
    include_in_schema=False,
)
