"""`stockpile dev` from start to stop: lock, ports, servers, migrations, processes, cleanup."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from honcho.printer import Printer
from sqlalchemy.exc import SQLAlchemyError

from shared.core.settings import Settings
from stockpile.devstack.banner import Announcer, ready_banner, sandbox_warning
from stockpile.devstack.credentials import api_token_credential, flower_login_credential
from stockpile.devstack.lock import exclusive
from stockpile.devstack.options import HOST, DevError, DevOptions
from stockpile.devstack.ports import check_ports, choose_redis_port
from stockpile.devstack.processes import child_environment, process_commands
from stockpile.devstack.signals import StopRequested, stop_signals_ignored, stop_signals_raise
from stockpile.devstack.supervisor import supervise
from stockpile.localstack import LocalStackError, Services, resolve_services
from stockpile.migrations import upgrade_head


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
    announcer = Announcer(printer, output)
    with exclusive(data_dir / "dev.lock"), stop_signals_raise():
        try:
            return _run_locked(settings, options, data_dir, base_env, printer, announcer)
        except StopRequested as stop:
            return 128 + stop.signum


def _run_locked(
    settings: Settings,
    options: DevOptions,
    data_dir: Path,
    base_env: Mapping[str, str],
    printer: Printer,
    announcer: Announcer,
) -> int:
    sandbox = settings.alphavantage_api_key is None
    check_ports(options, sandbox=sandbox)
    redis_port = None if settings.redis_url else choose_redis_port(options.redis_port)
    api_token = api_token_credential(settings, data_dir)
    flower_login = flower_login_credential(settings, data_dir)
    sandbox_url = f"http://{HOST}:{options.sandbox_port}/query" if sandbox else None
    shown_dir = options.data_dir
    announcer.say(f"the dashboard will be at http://{HOST}:{options.api_port}/ once ready")
    if sandbox:
        announcer.say(*sandbox_warning(sandbox_url), loud=True)
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
        banner = ready_banner(options, services, api_token, flower_login, sandbox_url)
        return supervise(
            commands, env, flower_login.value, printer, announcer, banner, options.api_port
        )
    finally:
        with stop_signals_ignored():
            announcer.manager = None
            if _embedded(services):
                announcer.say("stopping the embedded servers")
            services.close()
            announcer.say("stopped")


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
