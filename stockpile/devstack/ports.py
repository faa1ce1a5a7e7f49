"""The ports the stack needs: free, distinct, and Redis' preferred one when it can have it."""

from __future__ import annotations

import socket

from stockpile.devstack.options import HOST, DevError, DevOptions

# Preferred, so the embedded Redis keeps its URL between runs; 6379 is left to a system Redis.
PREFERRED_REDIS_PORT = 6380


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `host:port` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(options: DevOptions, *, sandbox: bool) -> None:
    wanted = {
        "the API": ("--api-port", options.api_port),
        "Flower": ("--flower-port", options.flower_port),
    }
    if sandbox:
        wanted["the sandbox"] = ("--sandbox-port", options.sandbox_port)
    ports = [port for _, port in wanted.values()]
    if len(set(ports)) != len(ports):
        raise DevError(f"the API, Flower and sandbox ports must differ (got {ports})")
    for what, (option, port) in wanted.items():
        if not port_is_free(port):
            raise DevError(
                f"port {port} for {what} is already in use; stop what listens there "
                f"or choose another with {option}"
            )


def choose_redis_port(requested: int | None) -> int | None:
    if requested is not None:
        if not port_is_free(requested):
            raise DevError(
                f"port {requested} for Redis is already in use; choose another with --redis-port"
            )
        return requested
    return PREFERRED_REDIS_PORT if port_is_free(PREFERRED_REDIS_PORT) else None
