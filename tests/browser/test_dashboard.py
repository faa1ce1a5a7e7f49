"""The dashboard at `/` in headless Chromium against the real API, worker, beat and sandbox."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from playwright.sync_api import Response
from sqlalchemy import text
from sqlmodel import Session

from api.redis_clients import get_limiter
from shared.core.settings import get_settings
from shared.domain.prices import upsert_prices
from shared.upstream.ratelimit import RedisRateLimiter
from stockpile.sandbox.server import SandboxHandle
from tests.browser.support import INSTALL_HINT, Watched, chromium_path
from tests.support import API_TOKEN, history

if chromium_path() is None:  # one line in the summary, and no server started for nothing
    pytest.skip(INSTALL_HINT, allow_module_level=True)

pytestmark = [pytest.mark.browser, pytest.mark.e2e, pytest.mark.usefixtures("worker", "beat")]

# Deadlines for things that take a second or two on an idle machine.
SLOW = 60_000


def stored_rows(session: Session, symbol: str) -> int:
    return int(
        session.execute(
            text("SELECT count(*) FROM financial_data WHERE symbol = :s"), {"s": symbol}
        ).scalar_one()
    )


def store(session: Session, symbol: str, days: int, start: dt.date = dt.date(2000, 1, 3)) -> None:
    upsert_prices(session, symbol, history(days, start))
    session.commit()


def open_dashboard(watched: Watched) -> Response:
    response = watched.page.goto(watched.origin + "/")
    assert response is not None
    # The first poll of every panel has answered.
    watched.page.wait_for_function(
        "() => !document.getElementById('jobs-status').textContent.startsWith('Loading')"
        " && !document.getElementById('symbols-status').textContent.startsWith('Loading')"
        " && document.querySelectorAll('#budget-windows li').length > 0",
        timeout=SLOW,
    )
    return response


def choose_symbol(watched: Watched, symbol: str) -> None:
    page = watched.page
    page.wait_for_selector(f'#symbol-select option[value="{symbol}"]', state="attached")
    page.select_option("#symbol-select", symbol)
    page.wait_for_function(
        "(s) => document.getElementById('symbol-select').value === s"
        " && ['drawn', 'empty', 'error'].includes(document.getElementById('chart').dataset.state)",
        arg=symbol,
        timeout=SLOW,
    )


def give_token(watched: Watched, token: str) -> None:
    page = watched.page
    page.click("#token-set")
    page.fill("#token-input", token)
    page.click("#token-save")
    page.wait_for_selector("#token-dialog", state="hidden")


def refresh(watched: Watched, symbol: str) -> str:
    """Submit the refresh form; the message it shows."""
    page = watched.page
    page.evaluate("document.getElementById('refresh-message').dataset.kind = 'waiting'")
    page.fill("#refresh-symbol", symbol)
    page.click("#refresh-form button[type=submit]")
    page.wait_for_function(
        "() => ['ok', 'error'].includes(document.getElementById('refresh-message').dataset.kind)",
        timeout=SLOW,
    )
    return page.text_content("#refresh-message") or ""


def test_page_loads_clean_with_every_panel_and_only_its_own_origin(
    watched: Watched, api: httpx.Client, session: Session
) -> None:
    store(session, "IBM", 300)
    store(session, "MSFT", 300)
    headers = open_dashboard(watched).headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    page = watched.page
    # Opened as `./run dev` leaves it (IBM and AAPL tracked, IBM stored): IBM's chart first.
    page.wait_for_function(
        "() => document.getElementById('symbol-select').value === 'IBM'"
        " && document.getElementById('chart').dataset.state === 'drawn'",
        timeout=SLOW,
    )
    choose_symbol(watched, "MSFT")
    assert page.get_attribute("#chart", "data-state") == "drawn"
    tracked = page.eval_on_selector_all(
        "#symbols-table tbody tr", "rows => rows.map(r => r.dataset.symbol)"
    )
    assert tracked == ["AAPL", "IBM"]
    windows = api.get("/api/budget").json()["data"]["windows"]
    shown = page.eval_on_selector_all(
        "#budget-windows li", "items => items.map(i => Number(i.dataset.seconds))"
    )
    assert shown == [w["seconds"] for w in windows]
    # No inline script on the page: every script is a file of this origin.
    assert page.eval_on_selector_all("script:not([src])", "s => s.length") == 0
    assert watched.console_errors == []
    assert watched.failed_requests == []
    assert watched.foreign_requests() == []
    assert any(url.endswith("/api/financial_data.csv?symbol=MSFT") for url in watched.request_urls)


def test_chart_shows_the_stored_bars_and_follows_symbol_and_range(
    watched: Watched, api: httpx.Client, session: Session
) -> None:
    store(session, "MSFT", 1500)
    store(session, "KO", 260, start=dt.date(2020, 1, 1))
    open_dashboard(watched)
    page = watched.page
    choose_symbol(watched, "MSFT")
    assert page.get_attribute("#chart", "data-bars") == str(stored_rows(session, "MSFT"))
    choose_symbol(watched, "KO")
    assert page.get_attribute("#chart", "data-bars") == str(stored_rows(session, "KO"))
    last = session.execute(
        text("SELECT max(date) FROM financial_data WHERE symbol = 'KO'")
    ).scalar_one()

    page.click('.ranges button[data-range="3M"]')
    page.wait_for_function(
        "() => document.getElementById('chart').dataset.range === '3M'"
        " && document.getElementById('stats').dataset.end"
        " && document.getElementById('stats').dataset.start > '2020-02'",
        timeout=SLOW,
    )
    start = page.get_attribute("#stats", "data-start")
    assert page.get_attribute("#stats", "data-end") == last.isoformat()
    assert start is not None
    three_months_back = dt.date.fromisoformat(start)
    assert dt.timedelta(days=88) <= last - three_months_back <= dt.timedelta(days=93)
    expected = api.get(
        "/api/statistics", params={"symbol": "KO", "start_date": start, "end_date": last}
    ).json()["data"]
    stats_text = page.text_content("#stats") or ""
    assert f"{expected['average_daily_close_price']:.2f}" in stats_text
    assert f"{expected['average_daily_volume']:,}" in stats_text

    page.click('.ranges button[data-range="ALL"]')
    page.wait_for_function(
        "() => document.getElementById('stats').dataset.start === '2020-01-01'", timeout=SLOW
    )

    # The crosshair shows the hovered day's open, high, low, close and volume.
    box = page.locator("#chart").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.4)
    page.wait_for_function(
        "(last) => document.getElementById('legend').textContent.startsWith('KO ')"
        " && !document.getElementById('legend').textContent.includes(last)",
        arg=last.isoformat(),
        timeout=SLOW,
    )
    legend = page.text_content("#legend") or ""
    day = legend.split()[1]
    row = session.execute(
        text(
            "SELECT open_price, high_price, low_price, close_price, volume FROM financial_data"
            " WHERE symbol = 'KO' AND date = :d"
        ),
        {"d": dt.date.fromisoformat(day)},
    ).one()
    for value in row[:4]:
        assert str(float(value)) in legend.replace(",", "")
    assert f"{row[4]:,}" in legend


def test_an_empty_symbol_says_so(watched: Watched, session: Session) -> None:
    # A job for AAPL a moment ago: beat's check (every minute) leaves it alone during the test
    # instead of storing prices for it.
    session.execute(
        text(
            "INSERT INTO jobs (id, symbol, status, source, attempts, rows_written, finished_at)"
            " VALUES (:id, 'AAPL', 'succeeded', 'api', 1, 0, now())"
        ),
        {"id": uuid.uuid4()},
    )
    session.commit()
    open_dashboard(watched)
    choose_symbol(watched, "AAPL")  # tracked, nothing stored
    assert watched.page.get_attribute("#chart", "data-state") == "empty"
    assert (
        watched.page.text_content("#chart-status") == "No prices stored for AAPL yet — refresh it."
    )


def test_refresh_form_creates_a_job_that_goes_live_to_succeeded(
    watched: Watched, api: httpx.Client, session: Session, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=6)
    # Beat then has nothing to refresh: the only AlphaVantage call is this test's.
    session.execute(text("DELETE FROM tracked_symbols"))
    session.commit()
    open_dashboard(watched)
    page = watched.page
    page.evaluate("window.notReloaded = true")
    page.fill("#refresh-symbol", "MSFT")
    page.click("#refresh-form button[type=submit]")
    # No token yet: the page asks for it before sending anything.
    page.wait_for_selector("#token-dialog", state="visible")
    page.fill("#token-input", API_TOKEN)
    page.click("#token-save")
    page.wait_for_function(
        "() => document.getElementById('refresh-message').dataset.jobId", timeout=SLOW
    )
    job_id = page.get_attribute("#refresh-message", "data-job-id")
    assert job_id is not None
    assert (
        session.execute(
            text("SELECT symbol FROM jobs WHERE id = :id"), {"id": uuid.UUID(job_id)}
        ).scalar_one()
        == "MSFT"
    )
    row = f'#jobs-table tr[data-job-id="{job_id}"]'
    page.wait_for_selector(
        f'{row}[data-status="queued"], {row}[data-status="running"]', timeout=SLOW
    )
    page.wait_for_selector(f'{row}[data-status="succeeded"]', timeout=SLOW)
    assert page.evaluate("window.notReloaded") is True
    written = page.text_content(f"{row} td:last-child")
    assert written == f"{api.get(f'/jobs/{job_id}').json()['data']['rows_written']:,}"

    # The budget panel counts that call as the audit does.
    audited = session.execute(text("SELECT outcome, count(*) FROM api_calls GROUP BY 1")).all()
    assert [tuple(r) for r in audited] == [("ok", 1)]
    assert [call.outcome for call in sandbox.stats().calls] == ["ok"]
    page.wait_for_selector('#budget-today li[data-outcome="ok"][data-count="1"]', timeout=SLOW)

    # The token is nowhere but this tab's session storage.
    assert API_TOKEN not in page.content()
    assert API_TOKEN not in page.url
    assert all(API_TOKEN not in url for url in watched.request_urls)
    assert page.context.cookies() == []
    assert page.evaluate("JSON.stringify(Object.assign({}, localStorage))").find(API_TOKEN) == -1
    assert page.input_value("#token-input") == ""
    assert all(API_TOKEN not in message for message in watched.console_messages)
    assert page.evaluate("Object.values(sessionStorage)") == [API_TOKEN]


@pytest.fixture
def day_budget(
    monkeypatch: pytest.MonkeyPatch,
    sandbox: SandboxHandle,
    redis_client: redis.Redis,  # type: ignore[type-arg]
) -> Iterator[RedisRateLimiter]:
    """The API's own limiter (same process) with a day window too; its state cleared after."""
    monkeypatch.setenv("ALPHAVANTAGE_RATE_LIMITS", "50/second,500/day")
    get_settings.cache_clear()
    get_limiter.cache_clear()
    yield get_limiter()
    monkeypatch.undo()
    get_settings.cache_clear()
    get_limiter.cache_clear()
    # A cooldown left behind would hold up the module's beat and worker in later tests.
    for key in redis_client.scan_iter("stockpile:*"):
        redis_client.delete(key)


def test_budget_panel_shows_what_the_api_says_a_used_up_window_and_the_cooldown(
    watched: Watched, api: httpx.Client, session: Session, day_budget: RedisRateLimiter
) -> None:
    reason = "AlphaVantage asked us to slow down: <b>Thank you</b>"
    day_budget.exhaust(day_budget.windows[1], "upstream said the day is used up")
    day_budget.cooldown(600, reason)
    open_dashboard(watched)
    page = watched.page
    budget = api.get("/api/budget").json()["data"]
    day = budget["windows"][1]
    assert day["used"] == 500
    assert day["next_free_at"] is not None
    page.wait_for_selector('#budget-windows li[data-seconds="86400"][data-used="500"]')
    shown = page.text_content('#budget-windows li[data-seconds="86400"]') or ""
    assert "500 / 500 per day" in shown
    assert f"next call at {day['next_free_at'].replace('T', ' ').replace('Z', ' UTC')}" in shown
    cooldown = page.text_content("#budget-cooldown") or ""
    until = budget["cooldown"]["until"].replace("T", " ").replace("Z", " UTC")
    assert cooldown == f"cooldown until {until}: {reason}"
    assert page.eval_on_selector_all("#budget-cooldown b", "b => b.length") == 0


def test_wrong_token_shows_the_401_and_creates_nothing(watched: Watched, session: Session) -> None:
    open_dashboard(watched)
    give_token(watched, "not-the-token")
    message = refresh(watched, "MSFT")
    assert "401" in message
    assert "Missing or invalid bearer token." in message
    assert watched.page.get_attribute("#refresh-message", "data-kind") == "error"
    assert (
        session.execute(text("SELECT count(*) FROM jobs WHERE symbol = 'MSFT'")).scalar_one() == 0
    )


def test_bad_symbol_shows_the_400_message(
    watched: Watched, api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    open_dashboard(watched)
    give_token(watched, API_TOKEN)
    message = refresh(watched, "NOT A SYMBOL!")
    expected = api.post("/jobs", json={"symbol": "NOT A SYMBOL!"}, headers=auth)
    assert expected.status_code == 400
    assert expected.json()["info"]["error"] in message
    assert "400" in message


MARKUP = {
    "error": '<img src=x onerror="window.injected=1">',
    "detail": "<script>window.injected=2</script>waiting",
    "failure": '<b onmouseover="window.injected=3">parked</b>',
    "symbol": "<svg onload=1>",
}


def test_markup_from_the_database_shows_as_text_and_runs_nothing(
    watched: Watched, session: Session
) -> None:
    session.execute(
        text(
            "INSERT INTO jobs (id, symbol, status, source, attempts, error_code, error_message,"
            " detail, finished_at) VALUES (:id, :symbol, 'failed', 'api', 1, 'upstream_error',"
            " :error, :detail, now())"
        ),
        {"id": uuid.uuid4(), "symbol": MARKUP["symbol"], **MARKUP},
    )
    session.execute(
        text(
            "INSERT INTO tracked_symbols (symbol, failure_code, failure_message, failed_at)"
            " VALUES (:symbol, 'invalid_symbol', :failure, now())"
        ),
        MARKUP,
    )
    store(session, MARKUP["symbol"], 30)
    open_dashboard(watched)
    page = watched.page
    page.wait_for_selector("#jobs-table tbody tr")
    jobs_text = page.text_content("#jobs-table tbody") or ""
    assert MARKUP["symbol"] in jobs_text
    assert MARKUP["error"] in jobs_text
    assert MARKUP["detail"] in jobs_text
    symbols_text = page.text_content("#symbols-table tbody") or ""
    assert MARKUP["symbol"] in symbols_text
    assert MARKUP["failure"] in symbols_text
    options = page.eval_on_selector_all("#symbol-select option", "o => o.map(x => x.value)")
    assert MARKUP["symbol"] in options
    page.select_option("#symbol-select", MARKUP["symbol"])
    page.wait_for_function(
        "() => ['drawn', 'error'].includes(document.getElementById('chart').dataset.state)",
        timeout=SLOW,
    )
    page.hover(f'#symbols-table tr[data-symbol="{MARKUP["symbol"]}"] td:nth-child(7)')
    assert MARKUP["symbol"] in (page.text_content("#chart-status") or "")
    # Nothing became an element, no handler or script ran.
    created = page.evaluate(
        "() => document.querySelectorAll(':is(#jobs-table, #symbols-table, #legend, #stats,"
        " #chart-status, #symbol-select) :is(img, svg, b, script), [onload], [onerror],"
        " [onmouseover], script:not([src])')"
        " .values().map(e => e.outerHTML).toArray()"
    )
    assert created == []
    assert page.evaluate("typeof window.injected") == "undefined"
    assert watched.dialogs == []


def test_phone_width_has_no_sideways_scroll(watched: Watched, session: Session) -> None:
    store(session, "MSFT", 100)
    watched.page.set_viewport_size({"width": 390, "height": 844})
    open_dashboard(watched)
    choose_symbol(watched, "MSFT")
    overflow = watched.page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0


@pytest.mark.parametrize(("path", "ready"), [("/docs", ".swagger-ui .info"), ("/redoc", "h1")])
def test_api_docs_load_from_the_api_alone(watched: Watched, path: str, ready: str) -> None:
    page = watched.page
    page.goto(watched.origin + path)
    page.wait_for_selector(ready, timeout=SLOW)
    assert "Stockpile" in (page.text_content(ready) or "")
    assert watched.foreign_requests() == []
    assert watched.failed_requests == []
    assert watched.console_errors == []


def test_track_and_stop_tracking_from_the_page(watched: Watched, session: Session) -> None:
    open_dashboard(watched)
    page = watched.page
    give_token(watched, API_TOKEN)
    page.fill("#track-symbol", "msft")
    page.click("#track-form button[type=submit]")
    row = '#symbols-table tr[data-symbol="MSFT"]'
    page.wait_for_selector(row, timeout=SLOW)
    assert page.text_content("#track-message") == "MSFT is tracked. A refresh job started."
    tracked = "SELECT count(*) FROM tracked_symbols WHERE symbol = 'MSFT'"
    assert session.execute(text(tracked)).scalar_one() == 1
    # Its backfill job shows among the jobs without a reload.
    page.wait_for_selector('#jobs-table tr td.symbol:text-is("MSFT")', timeout=SLOW)

    page.click(f"{row} button")
    page.wait_for_selector(row, state="detached", timeout=SLOW)
    assert page.text_content("#track-message") == "MSFT is no longer tracked (its prices stay)."
    assert session.execute(text(tracked)).scalar_one() == 0


def test_theme_switches_between_dark_and_light_and_is_remembered(watched: Watched) -> None:
    open_dashboard(watched)
    page = watched.page
    first = page.get_attribute("html", "data-theme")
    assert first in {"dark", "light"}
    page.click("#theme-toggle")
    other = page.get_attribute("html", "data-theme")
    assert {first, other} == {"dark", "light"}
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.reload()
    page.wait_for_selector("#budget-windows li")
    assert page.get_attribute("html", "data-theme") == other
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == background
