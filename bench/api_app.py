"""The API as deployed plus a bench-only route: a constant body of any size, the framework's ceiling.

Served by the bench's own uvicorn launcher (`uvicorn bench.api_app:app`); `api/` stays untouched.
"""

from __future__ import annotations

from functools import lru_cache

from fastapi import Response

from api.main import app

_ENVELOPE = b'{"data":"","info":{"error":""}}'


@lru_cache(maxsize=64)
def constant_body(size: int) -> bytes:
    """A JSON envelope of exactly `size` bytes (at least the empty envelope's size)."""
    filler = max(0, size - len(_ENVELOPE))
    return b'{"data":"' + b"x" * filler + b'","info":{"error":""}}'


async def constant(size: int) -> Response:
    """The same bytes every time: no database, no validation beyond the path, no serialization."""
    return Response(constant_body(size), media_type="application/json")


app.add_api_route("/_bench/constant/{size}", constant, methods=["GET"], include_in_schema=False)
