"""What the dashboard's browser tests share: where Chromium is, and a watched page."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page

INSTALL_HINT = (
    "Chromium not found: install it (Debian/Ubuntu: apt-get install -y chromium) "
    "to run the browser tests"
)


def chromium_path() -> str | None:
    """The system Chromium, if any."""
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class Watched:
    """A page and what it did: its console, failed requests, every URL it asked for."""

    page: Page
    origin: str
    console_messages: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    request_urls: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def foreign_requests(self) -> list[str]:
        """Requests to any origin but the API's (data: and blob: URLs load nothing)."""
        return [
            url
            for url in self.request_urls
            if urlsplit(url).scheme not in ("data", "blob")
            and f"{urlsplit(url).scheme}://{urlsplit(url).netloc}" != self.origin
        ]
