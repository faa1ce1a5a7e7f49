"""The API and Celery workers of a benchmark, as child processes (see tests/processes.py)."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from stockpile.localstack import free_port
from tests.processes import Process, celery_worker_command

__all__ = ["Process", "running_api", "running_worker"]


@contextmanager
def running_api(
    env: Mapping[str, str], *, workers: int = 1, source: Path | None = None, name: str = "api"
) -> Iterator[tuple[Process, str]]:
    """The bench app (the API plus bench-only routes) under uvicorn; yields it and its URL.

    `source`: another checkout (a worktree of an earlier commit) whose code the app runs
    instead of this one's, for a same-run comparison.
    """
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
        # uvicorn puts this folder first on sys.path, ahead of this checkout.
        *(["--app-dir", str(source)] if source is not None else []),
    ]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as log_dir:
        process = Process(name, command, env, Path(log_dir))
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
    command = celery_worker_command(
        app=app, name=name, concurrency=concurrency, log_level="WARNING"
    )
    with tempfile.TemporaryDirectory() as log_dir:
        process = Process(name, command, env, Path(log_dir))
        try:
            yield process
        finally:
            process.stop()


def checkout_label(source: Path) -> str:
    """A checkout's short commit hash (its directory's name if git cannot tell)."""
    done = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else source.name
