"""The dashboard in headless Chromium against the real API, worker, beat and sandbox.

One browser, worker and beat serve the whole module; each test gets a fresh browser context
(its own sessionStorage, localStorage and cookies) and a database emptied by `session`.
Chromium comes from the system (Debian: `apt-get install -y chromium`); these tests are
skipped, with that hint, where it is missing. `playwright install` is never needed.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Request, sync_playwright

from tests.browser.support import INSTALL_HINT, Watched, chromium_path
from tests.processes import Process, celery_beat, celery_worker


# Module scope, not session: while Playwright's sync API runs, its event loop is the thread's
# running loop, and every later test in this process that calls asyncio.run() would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    if executable is None:
        pytest.skip(INSTALL_HINT)
    with sync_playwright() as playwright:
        # --no-sandbox: CI and these machines run as root, where Chromium's sandbox refuses.
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def worker() -> Iterator[Process]:
    with celery_worker({}, name="browser") as process:
        yield process


@pytest.fixture(scope="module")
def beat(worker: Process) -> Iterator[Process]:
    with celery_beat({}) as process:
        yield process


@pytest.fixture
def watched(browser: Browser, api_url: str) -> Iterator[Watched]:
    """A fresh tab (own storage) whose console, requests and alerts are recorded."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    # Everything waits generously: the machine may be loaded.
    page.set_default_timeout(30_000)
    record = Watched(page=page, origin=api_url)

    def on_console(message: ConsoleMessage) -> None:
        record.console_messages.append(message.text)
        if message.type == "error":
            record.console_errors.append(message.text)

    def on_failed(request: Request) -> None:
        record.failed_requests.append(f"{request.url}: {request.failure}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: record.console_errors.append(f"page error: {error}"))
    page.on("requestfailed", on_failed)
    page.on("request", lambda request: record.request_urls.append(request.url))

    def on_dialog(dialog: object) -> None:  # an alert() would mean injected script ran
        record.dialogs.append(str(getattr(dialog, "message", "")))
        dialog.dismiss()  # type: ignore[attr-defined]

    page.on("dialog", on_dialog)
    yield record
    context.close()
