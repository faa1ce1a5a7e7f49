"""What `stockpile dev` tells its user: progress lines, the sandbox warning, the ready banner."""

from __future__ import annotations

import datetime as dt
from contextlib import suppress
from typing import TYPE_CHECKING, TextIO

from honcho.manager import SYSTEM_PRINTER_NAME
from honcho.printer import Message, Printer
from sqlalchemy.engine import make_url

from stockpile.devstack.credentials import Credential
from stockpile.devstack.options import HOST, DevOptions
from stockpile.localstack import Services

if TYPE_CHECKING:
    from stockpile.devstack.supervisor import Supervisor

_BOLD_YELLOW = "\033[1;33m"
_RESET = "\033[0m"


class Announcer:
    """Writes `system` lines in honcho's format: directly, or through its queue while it runs."""

    def __init__(self, printer: Printer, output: TextIO) -> None:
        self._printer = printer
        self._colour = output.isatty()
        self.manager: Supervisor | None = None

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


def sandbox_warning(sandbox_url: str | None) -> list[str]:
    rule = "!" * 78
    return [
        rule,
        "No AlphaVantage key is configured (ALPHAVANTAGE_API_KEY or ALPHAVANTAGE_API_KEY_FILE):",
        f"prices come from the SANDBOX AlphaVantage at {sandbox_url},",
        "made-up data, not the real market. Put ALPHAVANTAGE_API_KEY=<your key> in .env for real.",
        rule,
    ]


def ready_banner(
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
