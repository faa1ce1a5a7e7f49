"""PostgreSQL connection details from a SQLAlchemy URL, for psycopg2 and libpq tools."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2  # type: ignore[import-untyped]
from psycopg2.extensions import connection  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url


def dsn(database_url: str) -> str:
    """A libpq connection string for a SQLAlchemy PostgreSQL URL."""
    return " ".join(f"{key}='{value}'" for key, value in libpq_params(database_url).items())


def libpq_params(database_url: str) -> dict[str, str]:
    """host, port, user, password and dbname of a SQLAlchemy URL (socket folders included)."""
    url = make_url(database_url)
    params: dict[str, str] = {}
    host = url.query.get("host") or url.host
    if host:
        params["host"] = str(host)
    port = url.query.get("port") or url.port
    if port:
        params["port"] = str(port)
    if url.username:
        params["user"] = url.username
    if url.password:
        params["password"] = str(url.password)
    if url.database:
        params["dbname"] = url.database
    return params


def libpq_env(database_url: str) -> dict[str, str]:
    """This process's environment plus PGHOST, PGPORT, ... for libpq tools (pgbench, psql)."""
    params = libpq_params(database_url)
    return {
        **os.environ,
        "PGHOST": params.get("host", ""),
        "PGPORT": params.get("port", "5432"),
        "PGUSER": params.get("user", ""),
        "PGPASSWORD": params.get("password", ""),
        "PGDATABASE": params.get("dbname", ""),
    }


@contextmanager
def connect(database_url: str, *, autocommit: bool = True) -> Iterator[connection]:
    """A psycopg2 connection, closed at the end (psycopg2's own `with` only ends a transaction)."""
    conn = psycopg2.connect(dsn(database_url))
    conn.autocommit = autocommit
    try:
        yield conn
    finally:
        conn.close()
