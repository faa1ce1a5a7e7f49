"""`stockpile dev`: the whole stack on one machine, from one command.

In order: take the data folder's lock, check the ports, provide PostgreSQL and Redis (the
configured URLs, or embedded servers whose data stays in the data folder), apply the migrations,
then run the API, one worker, one beat, Flower and, without an AlphaVantage key, the sandbox.

The processes run under honcho's Manager, which prefixes (and on a terminal colours) each line
with the process name, and stops every process when one ends or on SIGINT/SIGTERM (and here
SIGHUP): SIGTERM to each process group, SIGKILL after STOP_GRACE_SECONDS. The embedded servers
are stopped after that.
Secrets reach the children through the environment or files, never their command lines (which
`ps` shows to every user).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import secrets
import shlex
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
from honcho.manager import SYSTEM_PRINTER_NAME, Manager
from honcho.printer import Message, Printer
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from shared.settings import Settings
from stockpile.localstack import LocalStackError, Services, resolve_services
from stockpile.migrations import upgrade_head

HOST = "127.0.0.1"
# Preferred, so the embedded Redis keeps its URL between runs; 6379 is left to a system Redis.
PREFERRED_REDIS_PORT = 6380
# Any key the sandbox serves (it treats `demo` and `badkey` specially).
SANDBOX_API_KEY = "stockpile-sandbox"
FLOWER_USER = "stockpile"
READY_TIMEOUT_SECONDS = 180.0
# SIGTERM lets a worker finish its running task and the others stop cleanly; whatever still runs
# after this is killed (a task cut short is redelivered and its job recovered, at-least-once).
STOP_GRACE_SECONDS = 10.0
# Leftovers of a process group still alive this long after its leader ended are killed.
GROUP_EXIT_GRACE_SECONDS = 5.0
# SIGHUP: the terminal was closed; the children, in their own sessions, would not notice.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_BOLD_YELLOW = "\033[1;33m"
_RESET = "\033[0m"


class DevError(Exception):
    """A problem that keeps `stockpile dev` from running the stack (one line for the user)."""


class _StopRequested(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived while the stack was still being prepared."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@dataclass(frozen=True, slots=True)
class DevOptions:
    """What `stockpile dev` was asked for on its command line."""

    data_dir: Path = Path(".stockpile")
    api_port: int = 8000
    flower_port: int = 5555
    sandbox_port: int = 8765
    # None: PREFERRED_REDIS_PORT when free, otherwise any free port.
    redis_port: int | None = None
    concurrency: int = 2


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret the stack uses, and the file it was generated into (None when configured)."""

    value: str
    kept_in: Path | None


def load_or_create_secret(path: Path, generate: Callable[[], str]) -> str:
    """Return the secret kept in `path`; on first use generate it and store it with mode 0600."""
    with suppress(FileNotFoundError):
        value = path.read_text(encoding="utf-8").strip()
        if value:
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                path.chmod(0o600)
            return value
    value = generate()
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f"{value}\n")
    os.replace(temporary, path)
    return value


def port_is_free(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on `host:port` now (SO_REUSEADDR, as servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# Worker options everywhere a worker runs (here, compose, tests): no start-up sync with the other
# workers (mingle) and no subscription to their events (gossip). Nothing uses them, and gossip
# logs a traceback each time the broker comes back. Flower needs neither: it reads task events
# and inspect replies.
QUIET_WORKER_OPTIONS = ("--without-gossip", "--without-mingle")


def process_commands(
    options: DevOptions, *, python: str, beat_schedule: Path, sandbox: bool
) -> dict[str, list[str]]:
    """The command line of every process, by name, in start order (they carry no secrets)."""
    celery = [python, "-m", "celery", "-A", "worker.celery_app"]
    commands: dict[str, list[str]] = {}
    if sandbox:
        commands["sandbox"] = [
            *(python, "-m", "stockpile.sandbox", "--host", HOST),
            *("--port", str(options.sandbox_port)),
        ]
    commands["api"] = [
        *(python, "-m", "uvicorn", "api.main:app", "--host", HOST),
        *("--port", str(options.api_port)),
    ]
    commands["worker"] = [
        *(*celery, "worker", "--loglevel", "INFO", "--hostname", "worker@%h"),
        *("--concurrency", str(options.concurrency)),
        *QUIET_WORKER_OPTIONS,
    ]
    commands["beat"] = [*celery, "beat", "--loglevel", "INFO", "--schedule", str(beat_schedule)]
    commands["flower"] = [*celery, "flower", f"--address={HOST}", f"--port={options.flower_port}"]
    return commands


def child_environment(
    base_env: Mapping[str, str],
    services: Services,
    *,
    api_token_file: Path | None,
    sandbox_url: str | None,
) -> dict[str, str]:
    """The environment every child gets: `base_env` pointed at this stack's servers."""
    env = {key: value for key, value in base_env.items() if key != "FLOWER_BASIC_AUTH"}
    env.update(
        PYTHONUNBUFFERED="1",  # lines reach the terminal as they are written
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
    )
    if api_token_file is not None:
        env.pop("API_TOKEN", None)
        env["API_TOKEN_FILE"] = str(api_token_file)
    if sandbox_url is not None:
        env.pop("ALPHAVANTAGE_API_KEY_FILE", None)
        env["ALPHAVANTAGE_API_KEY"] = SANDBOX_API_KEY
        env["ALPHAVANTAGE_BASE_URL"] = sandbox_url
    return env


class _Supervisor(Manager):  # type: ignore[misc]  # honcho has no type hints
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


class _Announcer:
    """Writes `system` lines in honcho's format: directly, or through its queue while it runs."""

    def __init__(self, printer: Printer, output: TextIO) -> None:
        self._printer = printer
        self._colour = output.isatty()
        self.manager: _Supervisor | None = None

    def say(self, *lines: str, loud: bool = False) -> None:
        """Show lines, in bold yellow on a terminal when `loud`."""
        for line in lines:
            text = f"{_BOLD_YELLOW}{line}{_RESET}" if loud and self._colour else line
            message = Message("line", text, dt.datetime.now(), SYSTEM_PRINTER_NAME, None)
            if self.manager is not None:
                self.manager.events.put(message)
            else:
                # A closed terminal must not keep the servers from being stopped.
                with suppress(OSError):
                    self._printer.write(message)


def run_dev(
    settings: Settings, options: DevOptions, *, base_env: Mapping[str, str], output: TextIO
) -> int:
    """Run the stack until it is stopped; return the exit status (128 + signal when stopped).

    Raises DevError, before the processes start, for a port in use, another `stockpile dev` on
    the same data folder, a configured server that does not answer, an embedded server that
    does not start, or migrations that fail.
    """
    data_dir = options.data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    printer = Printer(output)
    announcer = _Announcer(printer, output)
    with _exclusive(data_dir / "dev.lock"), _stop_signals_raise():
        try:
            return _run_locked(settings, options, data_dir, base_env, printer, announcer)
        except _StopRequested as stop:
            return 128 + stop.signum


def _run_locked(
    settings: Settings,
    options: DevOptions,
    data_dir: Path,
    base_env: Mapping[str, str],
    printer: Printer,
    announcer: _Announcer,
) -> int:
    sandbox = settings.alphavantage_api_key is None
    _check_ports(options, sandbox=sandbox)
    redis_port = None if settings.redis_url else _redis_port(options.redis_port)
    api_token = _api_token(settings, data_dir)
    flower_login = _flower_login(settings, data_dir)
    sandbox_url = f"http://{HOST}:{options.sandbox_port}/query" if sandbox else None
    shown_dir = options.data_dir
    announcer.say(f"the dashboard will be at http://{HOST}:{options.api_port}/ once ready")
    if sandbox:
        announcer.say(*_sandbox_warning(sandbox_url), loud=True)
    if not settings.database_url:
        announcer.say(f"starting the embedded PostgreSQL (data in {shown_dir}/postgres)")
    if not settings.redis_url:
        announcer.say(f"starting the embedded Redis (data in {shown_dir}/redis)")
    try:
        services = resolve_services(
            settings.database_url,
            settings.redis_url,
            data_dir=data_dir,
            persistent=True,
            redis_port=redis_port,
        )
    except LocalStackError as exc:
        raise DevError(str(exc)) from None
    try:
        announcer.say("applying database migrations")
        _migrate(services.database_url)
        env = child_environment(
            base_env, services, api_token_file=api_token.kept_in, sandbox_url=sandbox_url
        )
        commands = process_commands(
            options,
            python=sys.executable,
            beat_schedule=data_dir / "celerybeat-schedule",
            sandbox=sandbox,
        )
        banner = _banner(options, services, api_token, flower_login, sandbox_url)
        return _supervise(
            commands, env, flower_login.value, printer, announcer, banner, options.api_port
        )
    finally:
        with _stop_signals_ignored():
            announcer.manager = None
            if _embedded(services):
                announcer.say("stopping the embedded servers")
            services.close()
            announcer.say("stopped")


def _supervise(
    commands: Mapping[str, list[str]],
    env: Mapping[str, str],
    flower_basic_auth: str,
    printer: Printer,
    announcer: _Announcer,
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
    supervisor = _Supervisor(printer, on_started=watcher.start)
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
    url: str, finished: threading.Event, announcer: _Announcer, banner: list[str]
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
        while _group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _group_alive(group):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _check_ports(options: DevOptions, *, sandbox: bool) -> None:
    wanted = {
        "the API": ("--api-port", options.api_port),
        "Flower": ("--flower-port", options.flower_port),
    }
    if sandbox:
        wanted["the sandbox"] = ("--sandbox-port", options.sandbox_port)
    ports = [port for _, port in wanted.values()]
    if len(set(ports)) != len(ports):
        raise DevError(f"the API, Flower and sandbox ports must differ (got {ports})")
    for what, (option, port) in wanted.items():
        if not port_is_free(port):
            raise DevError(
                f"port {port} for {what} is already in use; stop what listens there "
                f"or choose another with {option}"
            )


def _redis_port(requested: int | None) -> int | None:
    if requested is not None:
        if not port_is_free(requested):
            raise DevError(
                f"port {requested} for Redis is already in use; choose another with --redis-port"
            )
        return requested
    return PREFERRED_REDIS_PORT if port_is_free(PREFERRED_REDIS_PORT) else None


def _api_token(settings: Settings, data_dir: Path) -> Credential:
    if settings.api_token is not None:
        return Credential(settings.api_token.get_secret_value(), None)
    path = data_dir / "api_token"
    return Credential(load_or_create_secret(path, secrets.token_urlsafe), path)


def _flower_login(settings: Settings, data_dir: Path) -> Credential:
    if settings.flower_basic_auth is not None:
        return Credential(settings.flower_basic_auth.get_secret_value(), None)
    path = data_dir / "flower_basic_auth"
    return Credential(
        load_or_create_secret(path, lambda: f"{FLOWER_USER}:{secrets.token_urlsafe(18)}"), path
    )


def _migrate(database_url: str) -> None:
    try:
        upgrade_head(database_url)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        raise DevError(
            f"applying the migrations failed: {reason[0] if reason else type(exc).__name__}"
        ) from None


def _embedded(services: Services) -> bool:
    return services.postgres is not None or services.redis is not None


def _sandbox_warning(sandbox_url: str | None) -> list[str]:
    rule = "!" * 78
    return [
        rule,
        "No AlphaVantage key is configured (ALPHAVANTAGE_API_KEY or ALPHAVANTAGE_API_KEY_FILE):",
        f"prices come from the SANDBOX AlphaVantage at {sandbox_url},",
        "made-up data, not the real market. Put ALPHAVANTAGE_API_KEY=<your key> in .env for real.",
        rule,
    ]


def _banner(
    options: DevOptions,
    services: Services,
    api_token: Credential,
    flower_login: Credential,
    sandbox_url: str | None,
) -> list[str]:
    api = f"http://{HOST}:{options.api_port}"
    lines = [
        f"Stockpile is ready: open {api}/ in a browser (the dashboard).",
        f"  API            {api}   (docs: {api}/docs)",
        f"  API token      {_credential(api_token, 'API_TOKEN')}",
        f"  Flower         http://{HOST}:{options.flower_port}",
        f"  Flower login   {_credential(flower_login, 'FLOWER_BASIC_AUTH')}",
    ]
    if sandbox_url is not None:
        lines.append(f"  AlphaVantage   SANDBOX at {sandbox_url} (made-up prices)")
    shown_dir = options.data_dir
    if services.postgres is not None:
        lines.append(f"  PostgreSQL     embedded, data in {shown_dir}/postgres")
    else:
        lines.append(f"  PostgreSQL     {_hide_password(services.database_url)} (DATABASE_URL)")
    if services.redis is not None:
        lines.append(f"  Redis          {services.redis_url} (embedded, data in {shown_dir}/redis)")
    else:
        lines.append(f"  Redis          {_hide_password(services.redis_url)} (REDIS_URL)")
    lines.append("Press Ctrl-C to stop everything.")
    return lines


def _credential(credential: Credential, variable: str) -> str:
    if credential.kept_in is None:
        return f"(configured with {variable})"
    return f"{credential.value}   (kept in {credential.kept_in})"


def _hide_password(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # Two stacks on one data folder would fight over its servers and run two beats.
    with lock_path.open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "?"
            raise DevError(
                f"another `stockpile dev` (pid {owner}) is already running with "
                f"{lock_path.parent}; stop it first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _StopRequested(signum)


@contextmanager
def _stop_signals_raise() -> Iterator[None]:
    # Until honcho takes over the signals, SIGTERM must unwind like Ctrl-C does, so that the
    # embedded servers started so far are stopped (the default SIGTERM action skips cleanup).
    previous = {sig: signal.signal(sig, _raise_stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _stop_signals_ignored() -> Iterator[None]:
    # Stopping the servers takes a few seconds; a second Ctrl-C must not cut it short.
    previous: dict[signal.Signals, Any] = {
        sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
