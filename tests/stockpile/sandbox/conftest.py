"""Sandbox test fixtures: a module's `CONFIG` (if any) is applied to the shared sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stockpile.sandbox.server import SandboxHandle


@pytest.fixture(autouse=True)
def sandbox(
    sandbox_server: SandboxHandle, request: pytest.FixtureRequest
) -> Iterator[SandboxHandle]:
    """The suite's sandbox process, reset and set to this module's CONFIG, then given back."""
    config = getattr(request.module, "CONFIG", None)
    if config is None:  # a module of pure functions: no server state to prepare
        yield sandbox_server
        return
    sandbox_server.reset()
    sandbox_server.configure(**config.model_dump())
    yield sandbox_server
    sandbox_server.reset()


@pytest.fixture(scope="module")
def http(sandbox_server: SandboxHandle) -> Iterator[httpx.Client]:
    """A client of the sandbox's control and query endpoints (enough connections for bursts)."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    with httpx.Client(base_url=sandbox_server.root_url, timeout=10, limits=limits) as client:
        yield client
