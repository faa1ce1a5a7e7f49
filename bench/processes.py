"""Child processes of a benchmark (API, Celery workers): logged, and stopped with their group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child in its own process group, with its output in a log file."""

    def __init__(self, name: str, command: list[str], env: Mapping[str, str], log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.popen.pid

    def children(self) -> list[psutil.Process]:
        """The processes this one started (a worker's pool processes), recursively."""
        try:
            return psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def log_tail(self, limit: int = 3000) -> str:
        """The end of what the process wrote."""
        return self.log_path.read_text(errors="replace")[-limit:]

    def check_alive(self) -> None:
        """Raise with the log's tail when the process has exited."""
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log_tail()}")

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM the process group (graceful), SIGKILL whatever is left after `timeout`."""
        if self.popen.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        self._log.close()


@contextmanager
def running_api(env: Mapping[str, str], *, workers: int = 1) -> Iterator[tuple[Process, str]]:
    """The bench app (the API plus bench-only routes) under uvicorn; yields it and its URL."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.api_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as log_dir:
        process = Process("api", command, env, Path(log_dir))
        try:
            _wait_http(process, f"{url}/healthz", timeout=60)
            yield process, url
        finally:
            process.stop()


def _wait_http(process: Process, url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        process.check_alive()
        with suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{process.name} did not answer {url}:\n{process.log_tail()}")
        time.sleep(0.1)


@contextmanager
def running_worker(
    env: Mapping[str, str], *, app: str, name: str, concurrency: int = 2
) -> Iterator[Process]:
    """A prefork Celery worker for `app` (started; the caller checks it is ready)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-P",
        "prefork",
        "-c",
        str(concurrency),
        "-n",
        f"{name}@%h",
        "--without-mingle",
        "--without-gossip",
        "-l",
        "WARNING",
    ]
    with tempfile.TemporaryDirectory() as log_dir:
        process = Process(name, command, env, Path(log_dir))
        try:
            yield process
        finally:
            process.stop()
