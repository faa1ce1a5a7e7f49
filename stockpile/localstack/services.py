"""Choose the PostgreSQL and Redis a command uses: the configured ones, or embedded ones."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.core.redaction import REDACTED, redact
from stockpile.localstack._server import ClosedOnExit
from stockpile.localstack.errors import LocalStackError, ServiceUnreachableError
from stockpile.localstack.postgres_server import EmbeddedPostgres, start_postgres
from stockpile.localstack.redis_server import EmbeddedRedis, start_redis

DEFAULT_DATABASE = "stockpile"


@dataclass
class Services(ClosedOnExit):
    """The URLs to use, and the embedded servers started for them (None for configured ones)."""

    database_url: str
    redis_url: str
    postgres: EmbeddedPostgres | None = None
    redis: EmbeddedRedis | None = None

    def close(self) -> None:
        """Stop the embedded servers; configured servers are left alone."""
        try:
            if self.redis is not None:
                self.redis.close()
        finally:
            if self.postgres is not None:
                self.postgres.close()


def resolve_services(
    database_url: str | None,
    redis_url: str | None,
    *,
    data_dir: Path | None = None,
    persistent: bool = False,
    database: str = DEFAULT_DATABASE,
    redis_port: int | None = None,
    connect_timeout: float = 3.0,
    start_timeout: float = 30.0,
) -> Services:
    """Use each configured URL if it answers, start an embedded server for each one not set.

    A URL that is set but does not answer is an error: quietly starting another server would
    hide the misconfiguration and split the data. Embedded servers keep their files under
    `data_dir` (`postgres/`, `redis/`), or in temp dirs deleted on close when it is None; the
    embedded PostgreSQL gets a `database` created on first use. Both URLs are checked before
    anything starts, and a failure part-way stops what was started.
    """
    if persistent and data_dir is None:
        raise ValueError("persistent services need a data_dir")
    if database_url:
        check_postgres(database_url, timeout=connect_timeout)
    if redis_url:
        check_redis(redis_url, timeout=connect_timeout)
    services = Services(database_url=database_url or "", redis_url=redis_url or "")
    try:
        if not database_url:
            services.postgres = start_postgres(
                data_dir / "postgres" if data_dir is not None else None,
                persistent=persistent,
                timeout=start_timeout,
            )
            services.database_url = services.postgres.create_database(database, exist_ok=True)
        if not redis_url:
            services.redis = start_redis(
                data_dir / "redis" if data_dir is not None else None,
                port=redis_port,
                persistent=persistent,
                timeout=start_timeout,
            )
            services.redis_url = services.redis.url
    except BaseException:
        services.close()
        raise
    return services


def check_postgres(url: str, *, timeout: float) -> None:
    """Raise ServiceUnreachableError unless PostgreSQL at `url` answers `SELECT 1`."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise LocalStackError("DATABASE_URL is not a valid SQLAlchemy URL") from None
    shown = parsed.render_as_string(hide_password=True)
    if parsed.get_backend_name() != "postgresql":
        raise LocalStackError(f"DATABASE_URL {shown} is not a PostgreSQL URL")
    try:
        # libpq counts whole seconds, and at least 2.
        engine = create_engine(
            parsed, poolclass=NullPool, connect_args={"connect_timeout": math.ceil(timeout)}
        )
    except (ImportError, SQLAlchemyError) as exc:
        raise LocalStackError(f"DATABASE_URL {shown} cannot be used: {exc}") from None
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = _first_line(getattr(exc, "orig", None) or exc, parsed.password)
        raise ServiceUnreachableError(
            f"DATABASE_URL is set to {shown} but PostgreSQL does not answer there ({reason}); "
            "start that server, fix the URL, or unset DATABASE_URL to use an embedded server"
        ) from None
    finally:
        engine.dispose()


def check_redis(url: str, *, timeout: float) -> None:
    """Raise ServiceUnreachableError unless Redis at `url` answers PING."""
    password = urlsplit(url).password
    shown = _hide_password(url)
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
        )
    except ValueError as exc:
        raise LocalStackError(f"REDIS_URL {shown} is not a Redis URL ({exc})") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceUnreachableError(
            f"REDIS_URL is set to {shown} but Redis does not answer there "
            f"({_first_line(exc, password)}); start that server, fix the URL, "
            "or unset REDIS_URL to use an embedded server"
        ) from None
    finally:
        client.close()


def _first_line(exc: object, password: str | None) -> str:
    lines = str(exc).strip().splitlines()
    return redact(lines[0] if lines else type(exc).__name__, [password] if password else [])


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{host}"))
