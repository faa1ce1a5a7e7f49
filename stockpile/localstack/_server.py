"""What the embedded servers have in common: a child process this process owns, and its files."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self

from stockpile.localstack._process import (
    RunAs,
    identity,
    log_size,
    parent_death_hook,
    wait_ready,
)
from stockpile.localstack.errors import ServerStartError

logger = logging.getLogger(__name__)


class ClosedOnExit:
    """Something `with` closes."""

    def close(self) -> None:
        """Release what this holds."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def server_folder(
    data_dir: Path | None, *, persistent: bool, make_temp: Callable[[], Path]
) -> tuple[Path, bool]:
    """The folder a server keeps its files in, and whether it is thrown away on close."""
    if data_dir is not None:
        return data_dir, False
    if persistent:
        raise ValueError("a persistent server needs a data_dir")
    return make_temp(), True


class OwnedServer(ClosedOnExit):
    """A server process started by this process, stopped by `close()` (or `with`, or atexit).

    A forked child (a Celery pool process, say) inherits the handle but owns nothing: there
    `stop()` and `close()` do nothing, so it cannot stop its parent's server.
    """

    NAME: ClassVar[str]
    LOG_NAME: ClassVar[str]

    def __init__(self, data_dir: Path, *, remove_on_close: bool, timeout: float) -> None:
        self.data_dir = data_dir.resolve()
        self.log_path = self.data_dir / self.LOG_NAME
        self.timeout = timeout
        self._remove_on_close = remove_on_close
        self._proc: subprocess.Popen[bytes] | None = None
        self._owner_pid = os.getpid()

    @property
    def pid(self) -> int | None:
        """Process id of the server while it runs."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the server process started by this handle is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _owned_process(self) -> subprocess.Popen[bytes] | None:
        """The running server's process when this process owns it, else None."""
        return self._proc if os.getpid() == self._owner_pid else None

    def start(self) -> None:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def _run_until_ready(
        self,
        command: list[str],
        *,
        cwd: Path,
        ready: Callable[[], bool],
        parent_death: signal.Signals,
        user: RunAs | None = None,
    ) -> None:
        """Start the server's process, its output appended to its log, and wait until `ready()`.

        The process gets a session of its own (a Ctrl+C meant for `stockpile dev` must not reach
        it first) and `parent_death` when this process dies. A start that fails raises
        ServerStartError with the log's last lines, and leaves no process behind.
        """
        log_start = log_size(self.log_path)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=parent_death_hook(parent_death),
                **identity(user),
            )
        try:
            wait_ready(
                self._proc,
                ready,
                name=self.NAME,
                log=self.log_path,
                log_start=log_start,
                timeout=self.timeout,
            )
        except ServerStartError:
            self._proc = None
            raise

    def stop(self) -> None:
        """Stop the server, keeping its files for the next start."""
        proc = self._owned_process()
        if proc is None:
            return
        began = time.monotonic()
        self._shut_down(proc)
        self._proc = None
        logger.info("%s stopped in %.2f s", self.NAME, time.monotonic() - began)

    def _shut_down(self, proc: subprocess.Popen[bytes]) -> None:
        """Make the running server `proc` exit."""
        raise NotImplementedError

    def started(self) -> Self:
        """This server, started, and closed at exit (or at once when it fails to start)."""
        atexit.register(self.close)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def _remove_files(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def close(self) -> None:
        """Stop the server and, for a throwaway one, delete its files."""
        if os.getpid() != self._owner_pid:
            return
        self.stop()
        atexit.unregister(self.close)
        if self._remove_on_close:
            self._remove_files()
