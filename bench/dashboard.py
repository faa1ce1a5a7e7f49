"""The dashboard in a real browser: time to draw 25 years, delay of a job change, CPU per open page.

`python -m bench.dashboard [--rounds 5] [--probes 15] [--cpu-seconds 60] [--screenshot PATH]`
starts throwaway PostgreSQL and Redis, the API (uvicorn, as deployed) and the system's headless
Chromium (Playwright with `executable_path`; never `playwright install`), and measures:

- choosing a symbol with 25 years of bars (6,500) until its last bar is drawn, median of
  `--rounds`; in the same run, a 100-bar symbol and the bare CSV download of the 25 years
  (`fetch` and `text()` in the page) as baselines;
- the delay from a job's change committed in PostgreSQL to that change shown on the page
  (`--probes` changes at random phases of the 1 s poll);
- the server's CPU (API, PostgreSQL, Redis) while no page, one page and five pages are open,
  `--cpu-seconds` each, as a share of one core per open page.

`--screenshot PATH` also writes a screenshot of the page (the README's docs/dashboard.png).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.pool import NullPool
from sqlmodel import Session

from bench.cpu import cpu_by_role
from bench.processes import running_api
from bench.stack import fresh_database, running_stack
from shared.core.market_calendar import last_completed_trading_day, previous_trading_day
from shared.core.models import utcnow
from shared.domain.prices import upsert_prices
from shared.upstream.parser import DailyBar
from stockpile.sandbox.data import generate_bars
from tests.browser.support import INSTALL_HINT, chromium_path

LONG_SYMBOL, LONG_BARS = "IBM", 6500
SHORT_SYMBOL, SHORT_BARS = "AAPL", 100
SERVER_ROLES = ("API", "PostgreSQL", "Redis")
DEADLINE_MS = 60_000


def chromium() -> str:
    """The system's Chromium, or a clear error."""
    found = chromium_path()
    if found is None:
        raise SystemExit(INSTALL_HINT)
    return found


def bars(symbol: str, count: int) -> list[DailyBar]:
    """The sandbox's made-up history of `symbol`: `count` trading days up to the last one."""
    days = [last_completed_trading_day(utcnow())]
    while len(days) < count:
        days.append(previous_trading_day(days[-1]))
    days.reverse()
    raw = generate_bars(symbol, count)
    scale = Decimal(10_000)
    return [
        DailyBar(
            day,
            Decimal(raw.opens[i]) / scale,
            Decimal(raw.highs[i]) / scale,
            Decimal(raw.lows[i]) / scale,
            Decimal(raw.closes[i]) / scale,
            raw.volumes[i],
        )
        for i, day in enumerate(days)
    ]


JOBS = (
    # symbol, status, attempts, detail, error code, error message, rows, minutes ago
    ("IBM", "succeeded", 1, None, None, None, 6500, 42),
    ("AAPL", "succeeded", 1, "Already current: no call made.", None, None, 0, 30),
    ("NVDA", "failed", 1, None, "invalid_symbol", "AlphaVantage does not know NVDAX.", None, 12),
    ("MSFT", "running", 1, None, None, None, None, 1),
    ("KO", "queued", 0, "Waiting for AlphaVantage budget (25/day used up).", None, None, None, 0),
)


def seed(engine: Engine) -> uuid.UUID:
    """Prices, jobs and audited calls a dashboard shows; returns a job id to change."""
    with Session(engine) as session:
        upsert_prices(session, LONG_SYMBOL, bars(LONG_SYMBOL, LONG_BARS))
        upsert_prices(session, SHORT_SYMBOL, bars(SHORT_SYMBOL, SHORT_BARS))
        session.execute(text("UPDATE tracked_symbols SET last_refreshed_at = now()"))
        probe = uuid.uuid4()
        for symbol, status, attempts, detail, code, message, rows, ago in JOBS:
            session.execute(
                text(
                    "INSERT INTO jobs (id, symbol, status, source, attempts, detail, error_code,"
                    " error_message, rows_written, created_at, not_before) VALUES (:id, :symbol,"
                    " :status, 'api', :attempts, :detail, :code, :message, :rows,"
                    " now() - make_interval(mins => :ago),"
                    " CASE WHEN :status = 'queued' THEN now() + interval '3 hours' END)"
                ),
                {
                    "id": probe if symbol == "KO" else uuid.uuid4(),
                    "symbol": symbol,
                    "status": status,
                    "attempts": attempts,
                    "detail": detail,
                    "code": code,
                    "message": message,
                    "rows": rows,
                    "ago": ago,
                },
            )
        for outcome, count in (("ok", 3), ("invalid_symbol", 1)):
            for _ in range(count):
                session.execute(
                    text(
                        "INSERT INTO api_calls (called_at, symbol, outputsize, outcome)"
                        " VALUES (now() - interval '10 minutes', 'IBM', 'compact', :outcome)"
                    ),
                    {"outcome": outcome},
                )
        session.commit()
    return probe


def open_page(browser: Browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    page.set_default_timeout(DEADLINE_MS)
    page.goto(url + "/")
    wait_drawn(page, LONG_SYMBOL)
    page.wait_for_selector("#jobs-table tbody tr")
    page.wait_for_selector("#budget-windows li")
    return page


def wait_drawn(page: Page, symbol: str) -> None:
    page.wait_for_function(
        "(s) => document.getElementById('symbol-select').value === s"
        " && document.getElementById('chart').dataset.state === 'drawn'",
        arg=symbol,
    )


def choose_and_time(page: Page, symbol: str) -> float:
    """Milliseconds from choosing `symbol` in the picker to its bars drawn."""
    page.evaluate(
        """(s) => {
            const select = document.getElementById('symbol-select');
            select.value = s;
            window.benchChosenAt = performance.now();
            select.dispatchEvent(new Event('change'));
        }""",
        symbol,
    )
    wait_drawn(page, symbol)
    return float(
        page.evaluate("() => Number(document.getElementById('chart').dataset.drawnAt)")
        - page.evaluate("() => window.benchChosenAt")
    )


def download_ms(page: Page, symbol: str) -> float:
    """Milliseconds for the page to download and read the symbol's CSV alone."""
    return float(
        page.evaluate(
            """async (s) => {
                const began = performance.now();
                const response = await fetch('/api/financial_data.csv?symbol=' + s);
                await response.text();
                return performance.now() - began;
            }""",
            symbol,
        )
    )


@dataclass
class Figures:
    draw_long: list[float]
    draw_short: list[float]
    download_long: list[float]
    delays: list[float]
    cpu: dict[int, float]  # open pages -> server CPU seconds per second
    cpu_roles: dict[int, dict[str, float]]


def measure_drawing(page: Page, rounds: int) -> tuple[list[float], list[float], list[float]]:
    long, short, download = [], [], []
    for _ in range(rounds):
        short.append(choose_and_time(page, SHORT_SYMBOL))
        long.append(choose_and_time(page, LONG_SYMBOL))
        download.append(download_ms(page, LONG_SYMBOL))
    return long, short, download


def measure_delays(page: Page, engine: Engine, probe: uuid.UUID, probes: int) -> list[float]:
    """Seconds from a job's detail committed to the page showing it."""
    delays = []
    for index in range(probes):
        time.sleep(random.uniform(0.2, 1.2))  # a random phase of the page's 1 s poll
        marker = f"probe {index} {uuid.uuid4().hex[:6]}"
        began = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE jobs SET detail = :d WHERE id = :id"), {"d": marker, "id": probe}
            )
        page.wait_for_function(
            "(m) => document.getElementById('jobs-table').textContent.includes(m)",
            arg=marker,
            polling="raf",
        )
        delays.append(time.perf_counter() - began)
    return delays


def measure_cpu(
    browser: Browser, url: str, database_url: str, redis_url: str, seconds: float
) -> tuple[dict[int, float], dict[int, dict[str, float]]]:
    rates: dict[int, float] = {}
    roles: dict[int, dict[str, float]] = {}
    for count in (0, 1, 5):
        pages = [open_page(browser, url) for _ in range(count)]
        time.sleep(2)  # past the first loads: the steady polling alone
        with cpu_by_role(database_url, redis_url) as spent:
            time.sleep(seconds)
        for page in pages:
            page.close()
        roles[count] = {role: spent[role] / seconds for role in SERVER_ROLES}
        rates[count] = sum(roles[count].values())
    return rates, roles


def report(figures: Figures, args: argparse.Namespace) -> str:
    def ms(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} ms (min {min(values):.0f}, max {max(values):.0f})"

    per_page_1 = figures.cpu[1] - figures.cpu[0]
    per_page_5 = (figures.cpu[5] - figures.cpu[0]) / 5
    delays = figures.delays
    lines = [
        f"Dashboard in headless Chromium ({chromium()}), API as one uvicorn process.",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| choose a {LONG_BARS}-bar (25-year) symbol → last bar drawn, median of {args.rounds}"
        f" | {ms(figures.draw_long)} | < 1 s |",
        f"| baseline: choose a {SHORT_BARS}-bar symbol → drawn | {ms(figures.draw_short)} | |",
        f"| baseline: download and read the 25-year CSV alone (in the page) "
        f"| {ms(figures.download_long)} | |",
        f"| job change committed → shown, {len(delays)} probes | median "
        f"{statistics.median(delays) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms | < 2 s |",
        f"| server CPU with no page open (baseline) | {figures.cpu[0] * 100:.2f} % of a core | |",
        f"| server CPU per open page (1 page) | {per_page_1 * 100:.2f} % of a core | ≤ 1 % |",
        f"| server CPU per open page (5 pages) | {per_page_5 * 100:.2f} % of a core | ≤ 1 % |",
        "",
        "Server CPU by process, % of one core (no page / 1 page / 5 pages): "
        + ", ".join(
            f"{role} " + " / ".join(f"{figures.cpu_roles[n][role] * 100:.2f}" for n in (0, 1, 5))
            for role in SERVER_ROLES
        )
        + f" ({args.cpu_seconds:.0f} s each).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="draws of each symbol")
    parser.add_argument("--probes", type=int, default=15, help="job changes to time")
    parser.add_argument("--cpu-seconds", type=float, default=60.0, help="per CPU measurement")
    parser.add_argument("--screenshot", type=Path, help="also write a screenshot of the page here")
    args = parser.parse_args()
    executable = chromium()
    with running_stack(None, None) as stack, fresh_database(stack, "dashboard") as database_url:
        env = stack.process_env(database_url)
        os.environ.update(env)
        engine = create_engine(database_url, poolclass=NullPool)
        probe = seed(engine)
        with running_api(env) as (_api, url), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = open_page(browser, url)
            if args.screenshot:
                screenshot(page, args.screenshot)
            long, short, download = measure_drawing(page, args.rounds)
            delays = measure_delays(page, engine, probe, args.probes)
            page.close()
            cpu, roles = measure_cpu(browser, url, database_url, stack.redis_url, args.cpu_seconds)
            browser.close()
        engine.dispose()
    print(report(Figures(long, short, download, delays, cpu, roles), args))


def screenshot(page: Page, path: Path) -> None:
    """The page as the README shows it: IBM over five years, the crosshair on a day."""
    page.click('.ranges button[data-range="5Y"]')
    page.wait_for_function("() => document.getElementById('stats').dataset.state === 'ready'")
    box = page.locator("#chart").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.72, box["y"] + box["height"] * 0.35)
    page.wait_for_timeout(300)  # the crosshair is drawn on the next frame
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    page.click('.ranges button[data-range="ALL"]')
    page.mouse.move(0, 0)
    print(f"screenshot written to {path}")


if __name__ == "__main__":
    main()
