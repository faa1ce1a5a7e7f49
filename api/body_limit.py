"""Refuse request bodies over 64 KiB with a 413 in the envelope, before or while they arrive.

The only bodies the API takes are small JSON objects (`{"symbol": "IBM", "outputsize": "full"}`),
so a larger one is refused rather than read and parsed. A `Content-Length` over the limit is
answered at once, before routing and without reading the body (so `data` is `null` even on a list
route). A body without one (chunked) is counted as it arrives and refused as soon as it passes the
limit: the application is never handed more than the limit.

FastAPI's own `max_body_size` is not used: its up-front refusal is Starlette's plain-text
"Content Too Large", not the contract's envelope.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.responses import error

MAX_BODY_BYTES = 64 * 1024


def _message(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


class BodyTooLarge(HTTPException):
    """413 raised from `receive`.

    An HTTPException, because FastAPI re-raises those from reading the body (any other exception
    becomes a 400) and api/errors.py then answers it in the envelope.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))


class BodyLimitMiddleware:
    """Pure ASGI, so requests without a body (every GET) pass through untouched."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared, announced = _body_framing(scope)
            if declared is not None and declared > self.max_bytes:
                await error(413, _message(self.max_bytes), is_list=False)(scope, receive, send)
                return
            if announced:
                receive = _counting(receive, self.max_bytes)
        await self.app(scope, receive, send)


def _body_framing(scope: Scope) -> tuple[int | None, bool]:
    """The declared length, if valid, and whether the request has a body at all.

    HTTP/1.1 (all uvicorn speaks) has a body only with `Content-Length` or `Transfer-Encoding`.
    """
    declared: int | None = None
    announced = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            # An invalid length (which the server refuses first anyway) is counted instead.
            declared = int(value) if value.isdigit() else None
            announced = announced or declared != 0
        elif name == b"transfer-encoding":
            announced = True
    return declared, announced


def _counting(receive: Receive, limit: int) -> Receive:
    """`receive` that raises BodyTooLarge once the body's bytes so far pass `limit`."""
    received = 0

    async def receive_counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return receive_counted
