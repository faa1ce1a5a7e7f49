"""The sandbox served by uvicorn on a socket bound up front, so that port 0 can be reported."""

import contextlib
import socket

import uvicorn

from stockpile.sandbox.app import create_app
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.state import Sandbox

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


class SandboxServer:
    """A sandbox on a socket bound at construction (so port 0 works), served by uvicorn."""

    def __init__(
        self,
        config: SandboxConfig,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        log_level: str = "warning",
    ) -> None:
        self.sandbox = Sandbox(config)
        self.sandbox.warm()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.create_server((host, port), family=family, backlog=2048)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.sandbox),
                host=host,
                port=self.port,
                log_level=log_level,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=2,
            )
        )

    @property
    def base_url(self) -> str:
        """The AlphaVantage-style endpoint, e.g. ``http://127.0.0.1:8765/query``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/query"

    def run(self) -> None:
        """Serve until ``stop`` is called or the process gets SIGINT/SIGTERM."""
        # uvicorn shuts down gracefully on SIGINT and then re-raises it; that is a normal end here.
        with self._socket, contextlib.suppress(KeyboardInterrupt):
            self._server.run(sockets=[self._socket])

    def stop(self) -> None:
        """Ask ``run`` to finish (safe from any thread)."""
        self._server.should_exit = True
