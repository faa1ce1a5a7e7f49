"""Running the processes under honcho until one ends or a stop arrives; nothing left behind."""

from __future__ import annotations

import os
import shlex
import signal
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from types import FrameType

import httpx
from honcho.manager import Manager
from honcho.printer import Printer

from stockpile.devstack.banner import Announcer
from stockpile.devstack.options import HOST
from stockpile.localstack._process import signal_reaches

READY_TIMEOUT_SECONDS = 180.0
# SIGTERM lets a worker finish its running task and the others stop cleanly; whatever still runs
# after this is killed (a task cut short is redelivered and its job recovered, at-least-once).
STOP_GRACE_SECONDS = 10.0
# Leftovers of a process group still alive this long after its leader ended are killed.
GROUP_EXIT_GRACE_SECONDS = 5.0


class Supervisor(Manager):  # type: ignore[misc]  # honcho has no type hints
    """honcho's Manager with a longer stop grace, safe against a stop while processes start.

    honcho signals each process by the pid the process reports once running; a stop requested
    before every pid is known would raise KeyError and leave processes behind, so such a request
    now waits until all have started. honcho sends SIGKILL 5 s after SIGTERM, and again on every
    tick; here it is sent once, after STOP_GRACE_SECONDS. Relies on honcho 2.0's private
    `_all_started`, `_any_stopped` and `_start` (the lock file pins the version).
    """

    def __init__(self, printer: Printer, on_started: Callable[[], None]) -> None:
        super().__init__(printer)
        self._on_started = on_started
        self._stop_requested = False
        self._stopping_since: float | None = None
        self._killed = False

    def terminate(self) -> None:
        self._stop_requested = True
        if self._all_started():
            if self._stopping_since is None:
                self._stopping_since = time.monotonic()
            super().terminate()

    def kill(self) -> None:
        since = self._stopping_since
        if self._killed or since is None or time.monotonic() - since < STOP_GRACE_SECONDS:
            return
        self._killed = True
        super().kill()

    def _any_stopped(self) -> bool:
        # The loop starts stopping everything once all have started and this is true.
        return self._stop_requested or bool(super()._any_stopped())

    def _start(self) -> None:
        super()._start()
        self._on_started()  # threads start only after the forks

    def process_groups(self) -> list[int]:
        """Pids of the started processes; each leads its own process group."""
        return [int(entry["pid"]) for entry in self._processes.values() if entry.get("pid")]


def supervise(
    commands: Mapping[str, list[str]],
    env: Mapping[str, str],
    flower_basic_auth: str,
    printer: Printer,
    announcer: Announcer,
    banner: list[str],
    api_port: int,
) -> int:
    finished = threading.Event()
    watcher = threading.Thread(
        target=_announce_when_ready,
        args=(f"http://{HOST}:{api_port}/readyz", finished, announcer, banner),
        name="stockpile-dev-ready",
        daemon=True,
    )
    supervisor = Supervisor(printer, on_started=watcher.start)
    for name, command in commands.items():
        process_env = {**env, "FLOWER_BASIC_AUTH": flower_basic_auth} if name == "flower" else env
        # `exec`: the program replaces the shell, so honcho's signals reach it directly.
        supervisor.add_process(name, f"exec {shlex.join(command)}", env=dict(process_env))
    announcer.manager = supervisor

    def hang_up(signum: int, _frame: FrameType | None) -> None:
        supervisor.returncode = 128 + signum
        supervisor.terminate()

    # honcho's loop handles SIGINT and SIGTERM itself.
    signal.signal(signal.SIGHUP, hang_up)
    try:
        supervisor.loop()
    finally:
        finished.set()
        if watcher.is_alive():
            watcher.join()
        _reap_groups(supervisor.process_groups())
    return int(supervisor.returncode or 0)


def _announce_when_ready(
    url: str, finished: threading.Event, announcer: Announcer, banner: list[str]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while not finished.is_set():
            with suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    announcer.say(*banner)
                    return
            if time.monotonic() > deadline:
                announcer.say(
                    f"the API is not ready after {READY_TIMEOUT_SECONDS:g} s; see its lines above",
                    loud=True,
                )
                return
            finished.wait(0.5)


def _reap_groups(groups: list[int]) -> None:
    # A process group can outlive its leader (e.g. a pool child); nothing may be left behind.
    deadline = time.monotonic() + GROUP_EXIT_GRACE_SECONDS
    for group in groups:
        while signal_reaches(os.killpg, group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if signal_reaches(os.killpg, group):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
