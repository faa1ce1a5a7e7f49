"""The sandbox's HTTP face: AlphaVantage's /query plus /_sandbox/* control endpoints."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from stockpile.sandbox import messages
from stockpile.sandbox.config import Outcome
from stockpile.sandbox.state import SERVED_FUNCTION, Decision, FaultScript, QueryParams, Sandbox

T = TypeVar("T")

JSON_CONTENT_TYPE = "application/json"
CSV_CONTENT_TYPE = "application/x-download"
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9.\-]")
_FIRST_JSON_OPEN = re.compile(rb'("1\. open": ")[^"]*')
_BAD_NUMBER = b"N/A"
# A trickled body arrives in this many pieces, evenly spaced over slow_seconds.
_TRICKLE_PIECES = 20
_BODY_OUTCOMES = (Outcome.OK, Outcome.TRUNCATED, Outcome.BAD_NUMBER, Outcome.SLOW_BODY)

_MESSAGES: dict[Outcome, tuple[str, str]] = {
    Outcome.INVALID_SYMBOL: ("Error Message", messages.INVALID_API_CALL),
    Outcome.INVALID_FUNCTION: ("Error Message", messages.FUNCTION_DOES_NOT_EXIST),
    Outcome.BAD_APIKEY: ("Error Message", messages.APIKEY_INVALID_OR_MISSING),
    Outcome.DEMO_KEY: ("Information", messages.DEMO_KEY),
    Outcome.PREMIUM_OUTPUTSIZE: ("Information", messages.PREMIUM_OUTPUTSIZE_FULL),
    Outcome.PREMIUM_ENDPOINT: ("Information", messages.PREMIUM_ENDPOINT),
    Outcome.BURST_LIMIT: ("Information", messages.BURST_LIMIT),
    Outcome.DAILY_LIMIT: ("Information", messages.DAILY_LIMIT),
    Outcome.PLAN_LIMIT: ("Information", messages.PLAN_LIMIT),
    Outcome.NOTE_LIMIT: ("Note", messages.LEGACY_NOTE_LIMIT),
}
_HTML_PAGES: dict[Outcome, tuple[int, str]] = {
    Outcome.HTTP_500: (500, "500 Internal Server Error"),
    Outcome.HTTP_503: (503, "503 Service Temporarily Unavailable"),
    # A proxy or captive portal answering in place of the API.
    Outcome.HTML: (200, "Access denied"),
    Outcome.HTML_502: (502, "502 Bad Gateway"),
}


def create_app(sandbox: Sandbox) -> Starlette:
    """The ASGI app serving ``sandbox``."""

    async def query(request: Request) -> Response:
        get = request.query_params.get
        params = QueryParams(
            function=get("function"),
            symbol=get("symbol"),
            outputsize=get("outputsize"),
            datatype=get("datatype"),
            apikey=get("apikey"),
        )
        decision = sandbox.decide(params)
        if decision.latency_seconds > 0:
            await asyncio.sleep(decision.latency_seconds)
        return render(sandbox, decision)

    async def read_stats(_: Request) -> Response:
        return JSONResponse(sandbox.stats().model_dump(mode="json"))

    async def reset(_: Request) -> Response:
        sandbox.reset()
        return Response(status_code=204)

    async def read_config(_: Request) -> Response:
        return JSONResponse(sandbox.config.model_dump(mode="json"))

    async def update_config(request: Request) -> Response:
        config = await _validated(request, sandbox.configure)
        if isinstance(config, Response):
            return config
        return JSONResponse(config.model_dump(mode="json"))

    async def add_faults(request: Request) -> Response:
        script = await _validated(request, FaultScript.model_validate)
        if isinstance(script, Response):
            return script
        sandbox.script(script)
        return _pending(sandbox)

    async def read_faults(_: Request) -> Response:
        return _pending(sandbox)

    return Starlette(
        routes=[
            Route("/query", query, methods=["GET"]),
            Route("/_sandbox/stats", read_stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/config", read_config, methods=["GET"]),
            Route("/_sandbox/config", update_config, methods=["PUT", "POST"]),
            Route("/_sandbox/faults", read_faults, methods=["GET"]),
            Route("/_sandbox/faults", add_faults, methods=["POST"]),
        ]
    )


def render(sandbox: Sandbox, decision: Decision) -> Response:
    """The HTTP response for a decided call, shaped like AlphaVantage's."""
    outcome = decision.outcome
    if outcome in _BODY_OUTCOMES:
        body = sandbox.store.body(
            decision.symbol, decision.end, full=decision.full, csv=decision.csv
        )
        if outcome is Outcome.TRUNCATED:
            body = body[: len(body) // 2]
        elif outcome is Outcome.BAD_NUMBER:
            body = _with_bad_number(body, csv=decision.csv)
        headers = None
        media_type = JSON_CONTENT_TYPE
        if decision.csv:
            filename = f"daily_{_UNSAFE_FILENAME.sub('_', decision.symbol)}.csv"
            headers = {"Content-Disposition": f"attachment; filename={filename}"}
            media_type = CSV_CONTENT_TYPE
        if outcome is Outcome.SLOW_BODY:
            return StreamingResponse(
                _trickle(body, sandbox.config.slow_seconds), media_type=media_type, headers=headers
            )
        return Response(body, media_type=media_type, headers=headers)
    if outcome is Outcome.EMPTY:
        return Response(b"{}", media_type=JSON_CONTENT_TYPE)
    if outcome in _HTML_PAGES:
        status, title = _HTML_PAGES[outcome]
        page = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return Response(page, status_code=status, media_type="text/html")
    key, text = _MESSAGES[outcome]
    if outcome is Outcome.DAILY_LIMIT and sandbox.config.echo_key_in_daily_limit:
        text = messages.DAILY_LIMIT_ECHOING_KEY.format(apikey=decision.apikey)
    elif outcome is Outcome.INVALID_SYMBOL:
        text = text.format(function=decision.function or SERVED_FUNCTION)
    elif outcome is Outcome.INVALID_FUNCTION:
        text = text.format(function=decision.function)
    # Errors stay JSON even for datatype=csv, pretty-printed like AlphaVantage's.
    return Response(json.dumps({key: text}, indent=4), media_type=JSON_CONTENT_TYPE)


def _with_bad_number(body: bytes, *, csv: bool) -> bytes:
    """The body with the newest row's open price replaced by a non-number."""
    if not csv:
        return _FIRST_JSON_OPEN.sub(lambda m: m.group(1) + _BAD_NUMBER, body, count=1)
    header, newest, rest = body.split(b"\r\n", 2)
    fields = newest.split(b",")
    fields[1] = _BAD_NUMBER
    return b"\r\n".join([header, b",".join(fields), rest])


async def _trickle(body: bytes, seconds: float) -> AsyncIterator[bytes]:
    """The body in small pieces, the last one `seconds` after the first."""
    size = max(1, -(-len(body) // _TRICKLE_PIECES))
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    for index, piece in enumerate(pieces):
        if index:
            await asyncio.sleep(seconds / max(1, len(pieces) - 1))
        yield piece


async def _validated(request: Request, parse: Callable[[dict[str, Any]], T]) -> T | Response:
    """The request's JSON object passed through `parse`, or the 400/422 answer to send instead."""
    try:
        body = await request.json()
    except ValueError:
        return JSONResponse({"detail": "body must be JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"detail": "body must be a JSON object"}, status_code=400)
    try:
        return parse(body)
    except ValidationError as exc:
        return JSONResponse({"detail": json.loads(exc.json(include_url=False))}, status_code=422)


def _pending(sandbox: Sandbox) -> Response:
    pending = [script.model_dump(mode="json") for script in sandbox.pending_scripts()]
    return JSONResponse({"pending": pending})
