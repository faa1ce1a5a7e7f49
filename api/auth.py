"""Bearer-token authentication of the write routes."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import Unauthorized
from shared.core.settings import get_settings

_bearer = HTTPBearer(auto_error=False, description="The API_TOKEN configured on the server")


async def require_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Refuse the request unless it carries the configured bearer token (async: no I/O, so it
    runs on the event loop instead of a worker thread)."""
    expected = get_settings().api_token
    if expected is None or credentials is None:
        raise Unauthorized()
    # Constant-time comparison, so the token cannot be guessed byte by byte from timings.
    if not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise Unauthorized()


TokenDep = Depends(require_token)
