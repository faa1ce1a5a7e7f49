"""Errors raised while providing PostgreSQL and Redis to Stockpile commands."""

from __future__ import annotations


class LocalStackError(RuntimeError):
    """Base class: a server could not be provided."""


class ServerStartError(LocalStackError):
    """An embedded server did not start (the message carries the tail of its log)."""


class ServiceUnreachableError(LocalStackError):
    """A configured DATABASE_URL or REDIS_URL does not answer."""
