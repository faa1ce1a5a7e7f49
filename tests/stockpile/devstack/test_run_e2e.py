"""`stockpile dev` as a user runs it: a fresh folder, nothing configured, Ctrl-C at the end."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from shared.domain.queue import TASK_RUN_JOB
from tests.support import wait_until

STOCKPILE = Path(sys.executable).with_name("stockpile")
# A cold start (initdb, five Python processes importing at once) on a busy 2-core CI machine.
STARTUP_TIMEOUT = 180.0
JOB_TIMEOUT = 60.0
# Stop grace (10 s) plus stopping PostgreSQL and Redis, with room for a loaded machine.
STOP_TIMEOUT = 60.0
CONFIGURED = ("DATABASE_URL", "REDIS_URL", "API_TOKEN", "API_TOKEN_FILE", "FLOWER_BASIC_AUTH")


@dataclass(frozen=True)
class Ports:
    """Where the stack under test listens."""

    api: int
    flower: int
    sandbox: int
    redis: int

    def options(self) -> list[str]:
        """The `stockpile dev` options choosing these ports."""
        return [
            *("--api-port", str(self.api), "--flower-port", str(self.flower)),
            *("--sandbox-port", str(self.sandbox), "--redis-port", str(self.redis)),
        ]

    def all(self) -> list[int]:
        """Every port."""
        return [self.api, self.flower, self.sandbox, self.redis]


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class DevRun:
    """A running `stockpile dev`, started in its own session as a terminal would run it."""

    def __init__(self, cwd: Path, env: Mapping[str, str], ports: Ports) -> None:
        self.popen = subprocess.Popen(
            [str(STOCKPILE), "dev", *ports.options()],
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.append(line)

    def output(self) -> str:
        """Everything printed so far."""
        return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        """The first match of `pattern` in the output, waiting for it to be printed."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern, self.output())
            if found:
                return found
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the output:\n{self.output()[-6000:]}")
            time.sleep(0.2)

    def tree(self) -> list[psutil.Process]:
        """Every process this run started, directly or not."""
        children: list[psutil.Process] = psutil.Process(self.popen.pid).children(recursive=True)
        return children

    def interrupt(self, sig: signal.Signals) -> int:
        """Send `sig` to the run's process group (Ctrl-C does that) and wait for it to end."""
        os.killpg(self.popen.pid, sig)
        try:
            status = self.popen.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running:\n{self.output()[-6000:]}") from None
        self._reader.join(timeout=10)
        return status

    def kill_everything(self) -> None:
        """Last resort after a failure: SIGKILL the run and everything it started."""
        with suppress(psutil.NoSuchProcess):
            for process in [*self.tree(), psutil.Process(self.popen.pid)]:
                with suppress(psutil.NoSuchProcess):
                    process.kill()
        self.popen.wait(timeout=10)


@contextmanager
def dev_run(cwd: Path, env: Mapping[str, str], ports: Ports) -> Iterator[DevRun]:
    """`stockpile dev` for the block; whatever the block leaves running is killed."""
    run = DevRun(cwd, env, ports)
    try:
        yield run
    finally:
        if run.popen.poll() is None:
            run.kill_everything()


def command_line(process: psutil.Process) -> str:
    """The process's command line ("" once it has exited)."""
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""


def assert_nothing_left(processes: list[psutil.Process], ports: Ports) -> None:
    """No process of the run is alive, and nothing listens on its ports."""

    def gone(process: psutil.Process) -> bool:
        try:
            return process.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    # Orphaned zombies are reaped by init a moment later; anything else alive is a leak.
    wait_until(lambda: all(map(gone, processes)), timeout=10, what="every process to exit")
    assert [port for port in ports.all() if listening(port)] == []


@pytest.fixture
def dev_dir() -> Iterator[Path]:
    """An empty working folder, without a .env.

    Outside pytest's tmp_path: as root, the embedded PostgreSQL runs as another user, which must
    traverse every parent folder, and pytest keeps its base temp folder 0700.
    """
    path = Path(tempfile.mkdtemp(prefix="stockpile-dev-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def dev_env() -> dict[str, str]:
    """The suite's environment without any configured server, key or secret."""
    return {
        key: value
        for key, value in os.environ.items()
        if key not in CONFIGURED and not key.startswith("ALPHAVANTAGE_")
    }


def finished_job(api: httpx.Client, job_id: str) -> dict[str, Any] | None:
    """The job once it has succeeded or failed, else None."""
    job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()["data"]
    return job if job["status"] in {"succeeded", "failed"} else None


def ibm_rows(api: httpx.Client) -> int:
    """How many IBM days the API has stored."""
    response = api.get("/api/financial_data", params={"symbol": "IBM"})
    assert response.status_code == 200, response.text
    count: int = response.json()["pagination"]["count"]
    return count


def flower_status(url: str, auth: tuple[str, str] | None = None) -> int | None:
    """The status Flower answers with, or None while it does not listen yet."""
    try:
        return httpx.get(url, auth=auth, timeout=5, trust_env=False).status_code
    except httpx.TransportError:
        return None


def flower_json(url: str, auth: tuple[str, str]) -> dict[str, Any] | None:
    """What a Flower API answers, or None while it has nothing (or does not answer)."""
    try:
        response = httpx.get(url, auth=auth, timeout=15, trust_env=False)
    except httpx.TransportError:
        return None
    body: dict[str, Any] = response.json() if response.status_code == 200 else {}
    return body or None


@pytest.mark.e2e
def test_dev_runs_the_stack_and_ctrl_c_leaves_nothing_behind(
    dev_dir: Path, dev_env: dict[str, str]
) -> None:
    ports = Ports(*free_ports(4))
    api_url = f"http://127.0.0.1:{ports.api}"
    flower_url = f"http://127.0.0.1:{ports.flower}/"

    with dev_run(dev_dir, dev_env, ports) as run:
        token = run.wait_for(r"API token\s+(\S+)", STARTUP_TIMEOUT)[1]
        login = run.wait_for(r"Flower login\s+(\S+):(\S+)", 5)
        user, password = login[1], login[2]
        assert "SANDBOX" in run.output()
        # The page's address comes first, and again first when the stack is ready.
        assert f"dashboard will be at {api_url}/" in run.output().splitlines()[0]
        assert f"Stockpile is ready: open {api_url}/ in a browser" in run.output()
        with httpx.Client(base_url=api_url, timeout=10, trust_env=False) as api:
            assert api.get("/readyz").status_code == 200
            assert api.get("/").headers["content-type"].startswith("text/html")
            headers = {"Authorization": f"Bearer {token}"}
            created = api.post("/jobs", json={"symbol": "IBM"}, headers=headers)
            # 200: beat's refresh of the tracked IBM came first; the same job is answered.
            assert created.status_code in {200, 202}, created.text
            job = wait_until(
                lambda: finished_job(api, created.json()["data"]["id"]),
                timeout=JOB_TIMEOUT,
                what="the IBM job to finish",
            )
            assert job["status"] == "succeeded", job
            assert ibm_rows(api) > 0

        wait_until(lambda: flower_status(flower_url), timeout=STARTUP_TIMEOUT, what="Flower")
        assert flower_status(flower_url) == 401
        assert flower_status(flower_url, (user, "wrong")) == 401
        assert flower_status(flower_url, (user, password)) == 200
        # Workers run without gossip and mingle: Flower still sees them (inspect replies) and
        # their tasks (events).
        workers = wait_until(
            lambda: flower_json(f"{flower_url}api/workers?refresh=1", (user, password)),
            timeout=30,
            what="Flower to list the worker",
        )
        assert any(name.startswith("worker@") for name in workers), workers
        tasks = wait_until(
            lambda: flower_json(f"{flower_url}api/tasks", (user, password)),
            timeout=30,
            what="Flower to list the tasks",
        )
        assert TASK_RUN_JOB in {task["name"] for task in tasks.values()}, tasks

        processes = run.tree()
        command_lines = " ".join(map(command_line, processes))
        assert "stockpile.sandbox" in command_lines
        assert token not in command_lines
        assert password not in command_lines
        assert run.interrupt(signal.SIGINT) == 130
    assert_nothing_left(processes, ports)
    secret_files = [dev_dir / ".stockpile" / name for name in ("api_token", "flower_basic_auth")]
    assert [oct(path.stat().st_mode & 0o777) for path in secret_files] == ["0o600", "0o600"]
