"""Real Stockpile processes for end-to-end tests and benchmarks: logged, and each killable.

bench/ (dev-only tooling, run from the repository root) starts its API and workers with these
too, so child processes are started, watched and stopped one way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from stockpile.devstack.processes import QUIET_WORKER_OPTIONS

REPO_ROOT = Path(__file__).resolve().parents[1]
CELERY = [sys.executable, "-m", "celery", "-A", "worker.celery_app"]


def celery_worker_command(*, app: str, name: str, concurrency: int, log_level: str) -> list[str]:
    """A prefork worker for the Celery app `app`, named `name@<host>`, without cluster chatter."""
    options = ["-P", "prefork", "-c", str(concurrency), "-n", f"{name}@%h", "-l", log_level]
    return [sys.executable, "-m", "celery", "-A", app, "worker", *options, *QUIET_WORKER_OPTIONS]


class Process:
    """A child in its own process group, its output in a log file; stopping it stops the group."""

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
        return self.popen.pid

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, limit: int = 3000) -> str:
        """The end of what the process wrote."""
        return self.log()[-limit:]

    def check_alive(self) -> None:
        """Raise with the log's tail when the process has exited."""
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}):\n{self.log_tail()}")

    def wait_for_log(self, needle: str, timeout: float = 30) -> None:
        """Block until `needle` appears in the log (or fail with the log's tail)."""
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: no {needle!r} in log:\n{self.log_tail()}")
            time.sleep(0.1)

    def children(self) -> list[psutil.Process]:
        """The processes this one started (a worker's pool processes), recursively."""
        try:
            children: list[psutil.Process] = psutil.Process(self.pid).children(recursive=True)
            return children
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the process and everything it started."""
        with suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM (warm shutdown), then SIGKILL whatever is left."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self._log.close()


@contextmanager
def celery_worker(
    env: Mapping[str, str], *, name: str = "worker", concurrency: int = 2
) -> Iterator[Process]:
    """A real prefork worker on the Stockpile queue, ready when the block starts."""
    with tempfile.TemporaryDirectory() as log_dir:
        command = celery_worker_command(
            app="worker.celery_app", name=name, concurrency=concurrency, log_level="INFO"
        )
        process = Process(name, command, env, Path(log_dir))
        try:
            process.wait_for_log("ready.", timeout=60)
            yield process
        finally:
            process.stop()


@contextmanager
def celery_beat(env: Mapping[str, str], *, name: str = "beat") -> Iterator[Process]:
    """A real beat process with its schedule file in a temporary directory."""
    with tempfile.TemporaryDirectory() as work_dir:
        process = Process(
            name,
            [
                *CELERY,
                "beat",
                "-s",
                str(Path(work_dir) / "schedule"),
                "--max-interval",
                "1",
                "-l",
                "INFO",
            ],
            env,
            Path(work_dir),
        )
        try:
            process.wait_for_log("beat: Starting", timeout=60)
            yield process
        finally:
            process.stop()
