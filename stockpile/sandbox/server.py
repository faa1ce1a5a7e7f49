"""Running the sandbox: in this process (``serve``) or as a child process (tests, benchmarks)."""

import contextlib
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

import httpx
from pydantic_core import to_jsonable_python

from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.listener import DEFAULT_HOST, SandboxServer
from stockpile.sandbox.state import SandboxStats

logger = logging.getLogger(__name__)


def serve(
    host: str,
    port: int,
    config: SandboxConfig,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the sandbox on ``host:port`` until interrupted (blocking).

    ``on_ready`` gets the query URL once the socket is bound, which tells port 0 users the port.
    """
    server = SandboxServer(config, host, port, log_level="info")
    logger.info("sandbox AlphaVantage listening at %s", server.base_url)
    if on_ready is not None:
        on_ready(server.base_url)
    server.run()


class SandboxHandle:
    """A client for a running sandbox's control endpoints."""

    def __init__(
        self, root_url: str, initial_config: SandboxConfig, pid: int | None = None
    ) -> None:
        self.root_url = root_url
        self.pid = pid
        self._initial_config = initial_config
        self._http = httpx.Client(base_url=root_url, timeout=10.0)

    @property
    def base_url(self) -> str:
        """The AlphaVantage-style query endpoint to point a client at."""
        return f"{self.root_url}/query"

    def stats(self) -> SandboxStats:
        """Every call received so far and counts per outcome."""
        response = self._http.get("/_sandbox/stats")
        response.raise_for_status()
        return SandboxStats.model_validate(response.json())

    def reset(self) -> None:
        """Clear calls, counters and scripted faults, and restore the config it started with."""
        self._http.post("/_sandbox/reset").raise_for_status()
        self._http.put(
            "/_sandbox/config", json=self._initial_config.model_dump(mode="json")
        ).raise_for_status()

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change settings at runtime; returns the settings now in force."""
        response = self._http.put("/_sandbox/config", json=to_jsonable_python(changes))
        response.raise_for_status()
        return SandboxConfig.model_validate(response.json())

    def config(self) -> SandboxConfig:
        """The settings in force."""
        response = self._http.get("/_sandbox/config")
        response.raise_for_status()
        return SandboxConfig.model_validate(response.json())

    def script_faults(self, outcomes: Sequence[str], symbol: str | None = None) -> None:
        """Make the next calls about ``symbol`` (any symbol if None) answer these outcomes."""
        response = self._http.post(
            "/_sandbox/faults", json={"symbol": symbol, "outcomes": list(outcomes)}
        )
        response.raise_for_status()

    def close(self) -> None:
        """Release the HTTP connection pool."""
        self._http.close()


@contextlib.contextmanager
def running_sandbox(
    config: SandboxConfig | None = None, *, startup_timeout: float = 30.0
) -> Iterator[SandboxHandle]:
    """Run a sandbox in a child process on a free loopback port for the duration of the block."""
    config = config or SandboxConfig()
    command = [
        sys.executable,
        "-m",
        "stockpile.sandbox",
        "--host",
        DEFAULT_HOST,
        "--port",
        "0",
        "--config",
        config.model_dump_json(),
        "--announce-port",
        "--exit-on-stdin-eof",
    ]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr
        )
        handle: SandboxHandle | None = None
        try:
            port = _announced_port(process, stderr, time.monotonic() + startup_timeout)
            handle = SandboxHandle(f"http://{DEFAULT_HOST}:{port}", config, process.pid)
            yield handle
        finally:
            if handle is not None:
                handle.close()
            _stop(process)


def _announced_port(process: subprocess.Popen[bytes], stderr: IO[bytes], deadline: float) -> int:
    assert process.stdout is not None
    fd = process.stdout.fileno()
    received = b""
    while b"\n" not in received:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"sandbox did not start in time\n{_tail(stderr)}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if ready:
            chunk = os.read(fd, 64)
            if not chunk:
                process.wait()
                raise RuntimeError(
                    f"sandbox exited with status {process.returncode}\n{_tail(stderr)}"
                )
            received += chunk
    return int(received.split(b"\n", 1)[0])


def _stop(process: subprocess.Popen[bytes]) -> None:
    # Closing stdin asks the child to shut down gracefully; signals are the fallback.
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _tail(stream: IO[bytes], limit: int = 4000) -> str:
    stream.seek(0)
    return stream.read().decode(errors="replace")[-limit:]
