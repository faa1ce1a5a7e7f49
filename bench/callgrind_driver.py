"""One checkout's API, one URL, called in-process as uvicorn calls it; run by bench.instructions.

    valgrind --tool=callgrind --instr-atstart=no ... python bench/callgrind_driver.py \
        CHECKOUT LIBRARY PATH QUERY WARMUP REQUESTS

Executed by path, not with -m: this script's folder (bench/, whose profile.py would shadow the
standard library's) is replaced on sys.path by CHECKOUT, so `api.main` and everything it imports
come from that checkout. The app's lifespan starts, WARMUP requests fill its caches and pools,
then REQUESTS requests run between callgrind's ZERO_STATS and DUMP_STATS (the two functions of
LIBRARY, a shared object bench.instructions compiles), with the cyclic collector off: a full
collection falling in one commit's window and not another's would be counted as the code's.
Prints one JSON line: the module the app came from, the status and a digest of the body.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import hashlib
import importlib
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Message, Receive, Send], Coroutine[Any, Any, None]]

# The name of the dump that holds the counted window (its "desc: Trigger" line).
WINDOW = "counted-requests"


class Exchange:
    """One request's receive and send, as uvicorn hands them to the app (minus the socket)."""

    __slots__ = ("body", "received", "status")

    def __init__(self) -> None:
        self.status = 0
        self.body: list[bytes] = []
        self.received = False

    async def receive(self) -> Message:
        if self.received:
            return {"type": "http.disconnect"}
        self.received = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.body.append(message.get("body", b""))


async def _lifespan(app: App, state: dict[str, Any]) -> Callable[[], Awaitable[None]]:
    """Start the app as uvicorn does (ASGI lifespan); returns its shutdown."""
    inbox: asyncio.Queue[Message] = asyncio.Queue()
    outbox: asyncio.Queue[Message] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": state}
    task = asyncio.create_task(app(scope, inbox.get, outbox.put))

    async def step(kind: str) -> None:
        await inbox.put({"type": f"lifespan.{kind}"})
        answer = await outbox.get()
        if answer["type"] != f"lifespan.{kind}.complete":
            raise RuntimeError(f"lifespan {kind}: {answer}")

    async def shutdown() -> None:
        await step("shutdown")
        await task

    await step("startup")
    return shutdown


async def _drive(
    app: App, library: ctypes.CDLL, path: str, query: str, warmup: int, count: int
) -> Message:
    state: dict[str, Any] = {}
    shutdown = await _lifespan(app, state)
    template: Message = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1:8000")],
    }

    async def request() -> Exchange:
        exchange = Exchange()
        # A new scope and a copy of the lifespan's state per request, as uvicorn makes them.
        await app({**template, "state": state.copy()}, exchange.receive, exchange.send)
        return exchange

    first = await request()
    body = b"".join(first.body)
    for _ in range(warmup):
        answer = await request()
        if answer.status != first.status or b"".join(answer.body) != body:
            raise RuntimeError(f"{path}?{query}: answers differ between requests")
    gc.collect()
    gc.disable()
    library.counting_start()
    differing = 0
    for _ in range(count):
        answer = await request()
        differing += answer.status != first.status
    library.counting_dump(WINDOW.encode())
    gc.enable()
    await shutdown()
    if differing:
        raise RuntimeError(f"{path}?{query}: {differing} counted answers had another status")
    return {
        "module": sys.modules["api.main"].__file__,
        "status": first.status,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }


def main() -> None:
    checkout, library_path, path, query, warmup, count = sys.argv[1:]
    sys.path[0] = checkout
    import uvloop  # the event loop uvicorn runs the API on

    app: App = importlib.import_module("api.main").app
    library = ctypes.CDLL(library_path)
    library.counting_dump.argtypes = [ctypes.c_char_p]
    result = uvloop.run(_drive(app, library, path, query, int(warmup), int(count)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
