"""AlphaVantage client and parser against a canned server on loopback: classification, secrecy."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import logging
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from shared.core.models import OutputSize
from shared.upstream.client import AlphaVantageClient
from shared.upstream.errors import (
    AlphaVantageError,
    BadApiKey,
    BadResponse,
    BurstLimited,
    DailyQuotaExceeded,
    DemoKeyRejected,
    InvalidSymbol,
    MalformedRow,
    PlanRateLimited,
    PremiumEndpoint,
    PremiumOutputSize,
    RateLimited,
    SymbolMismatch,
    UnsupportedFunction,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.upstream.parser import DailyBar, parse_daily_payload

KEY = "SECRETKEY-TEST-1234"
FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "alphavantage"

BURST = (
    "Thank you for using Alpha Vantage! Please consider spreading out your free API requests more "
    "sparingly (1 request per second). You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per day), "
    "raise the per-second burst limit, and instantly unlock all premium endpoints"
)
DAILY = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please "
    "subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
    "remove all daily rate limits."
)
ECHOED_KEY = (
    f"We have detected your API key as {KEY} and our standard API rate limit is 25 requests per "
    "day. Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to "
    "instantly remove all daily rate limits."
)
PREMIUM_ENDPOINT = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of "
    "the premium plans at https://www.alphavantage.co/premium/ to instantly unlock all premium "
    "endpoints"
)
PREMIUM_FULL = (
    "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature "
    "for the TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
    "https://www.alphavantage.co/premium/ to instantly unlock all premium features"
)
PLAN_LIMIT = (
    "Thank you for using Alpha Vantage! Please contact premium@alphavantage.co if you are "
    "targeting a higher API call volume."
)
LEGACY_NOTE = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and "
    "500 calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to "
    "target a higher API call frequency."
)
DEMO = (
    "The **demo** API key is for demo purposes only. Please claim your free API key at "
    "(https://www.alphavantage.co/support/#api-key) to explore our full API offerings."
)


# --- A canned AlphaVantage on loopback --------------------------------------------------------


@dataclass
class Canned:
    """What the fake server answers next."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    delay: float = 0.0
    hang_up: bool = False


@dataclass
class FakeAlphaVantage:
    """Serves `canned` to every request and records each request's query string."""

    url: str
    canned: Canned = field(default_factory=Canned)
    queries: list[dict[str, list[str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def answer(self, body: bytes | str | object, *, status: int = 200, **kwargs: Any) -> None:
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = json.dumps(body).encode()
        self.canned = Canned(status=status, body=body, **kwargs)


@pytest.fixture(scope="module")
def av_server() -> Iterator[FakeAlphaVantage]:
    state: list[FakeAlphaVantage] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fake = state[0]
            fake.queries.append(parse_qs(urlsplit(self.path).query))
            canned = fake.canned
            if canned.delay:
                fake.stop.wait(canned.delay)
            if canned.hang_up:
                self.close_connection = True
                return
            try:
                self.send_response(canned.status)
                self.send_header("Content-Type", canned.content_type)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)
            except OSError:
                pass  # the client gave up (timeout tests)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the request line carries the key; keep stderr quiet

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.append(FakeAlphaVantage(url=f"http://127.0.0.1:{server.server_port}/query"))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state[0]
    finally:
        state[0].stop.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def fake_av(av_server: FakeAlphaVantage) -> Iterator[FakeAlphaVantage]:
    """The module's server, reset for one test; slow handlers are released at the end."""
    av_server.canned = Canned()
    av_server.queries.clear()
    av_server.stop.clear()
    yield av_server
    av_server.stop.set()


@pytest.fixture(scope="module")
def client(av_server: FakeAlphaVantage) -> Iterator[AlphaVantageClient]:
    # Shared by the module: building an httpx.Client (its SSL context) costs ~0.1 s.
    with AlphaVantageClient(base_url=av_server.url, api_key=SecretStr(KEY), timeout=5.0) as av:
        yield av


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    # Stockpile's logging setup quiets httpx; these tests want every line it would write.
    for name in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def fetch_error(client: AlphaVantageClient, symbol: str = "IBM") -> AlphaVantageError:
    with pytest.raises(AlphaVantageError) as info:
        client.fetch_daily(symbol)
    return info.value


def assert_key_absent(exc: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    """The key is nowhere in the exception, its chain, its traceback or any log record."""
    texts = ["".join(traceback.format_exception(exc))]
    link: BaseException | None = exc
    while link is not None:
        texts += [str(link), repr(link), repr(getattr(link, "__dict__", {}))]
        link = link.__cause__ or link.__context__
    for record in caplog.records:
        texts += [record.getMessage(), record.exc_text or "", repr(record.args)]
    texts.append(caplog.text)
    leaks = [text for text in texts if KEY in text]
    assert not leaks


def assert_one_log_line(caplog: pytest.LogCaptureFixture, *parts: str) -> None:
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.upstream.client"]
    assert len(lines) == 1
    for part in ("symbol='IBM'", "outputsize=", "elapsed_ms=", *parts):
        assert part in lines[0]


def series_payload(rows: dict[str, dict[str, str]], symbol: str = "IBM") -> dict[str, Any]:
    return {
        "Meta Data": {
            "1. Information": "Daily Prices (open, high, low, close) and Volumes",
            "2. Symbol": symbol,
            "3. Last Refreshed": max(rows, default="2024-06-18"),
            "4. Output Size": "Compact",
            "5. Time Zone": "US/Eastern",
        },
        "Time Series (Daily)": rows,
    }


def row(
    open_: str = "10.00",
    high: str = "12.5",
    low: str = "9.5",
    close: str = "11",
    volume: str = "100",
) -> dict[str, str]:
    return {
        "1. open": open_,
        "2. high": high,
        "3. low": low,
        "4. close": close,
        "5. volume": volume,
    }


# --- Happy paths ------------------------------------------------------------------------------


def test_fetch_daily_inline_payload_parses_exact_decimals_ascending(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient, logs: pytest.LogCaptureFixture
) -> None:
    rows = {
        "2024-06-18": row("170.0000", "170.7500", "168.3800", "170.5500", "3386442"),
        "2024-06-14": row("125.4", "126", "124.1", "125.99", "0"),
        "2024-06-17": row("0.1234", "0.2", "0.1", "0.15", "9223372036854775807"),
    }
    fake_av.answer(series_payload(rows))

    series = client.fetch_daily("IBM")

    assert [bar.date for bar in series.bars] == [
        dt.date(2024, 6, 14),
        dt.date(2024, 6, 17),
        dt.date(2024, 6, 18),
    ]
    last = series.bars[-1]
    assert last == DailyBar(
        date=dt.date(2024, 6, 18),
        open=Decimal("170.0000"),
        high=Decimal("170.7500"),
        low=Decimal("168.3800"),
        close=Decimal("170.5500"),
        volume=3386442,
    )
    assert str(last.open) == "170.0000"
    assert str(series.bars[0].open) == "125.4"
    assert series.bars[1].volume == 2**63 - 1
    assert (series.symbol, series.output_size, series.last_refreshed) == (
        "IBM",
        "compact",
        "2024-06-18",
    )
    assert_one_log_line(logs, "outcome=ok", "bars=3")
    assert KEY not in logs.text


def test_fetch_daily_sends_expected_query_params(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient
) -> None:
    fake_av.answer(series_payload({"2024-06-18": row()}))

    client.fetch_daily("IBM", OutputSize.FULL)

    assert fake_av.queries == [
        {
            "function": ["TIME_SERIES_DAILY"],
            "symbol": ["IBM"],
            "outputsize": ["full"],
            "datatype": ["json"],
            "apikey": [KEY],
        }
    ]


def test_fetch_daily_httpx_request_log_is_redacted(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient, logs: pytest.LogCaptureFixture
) -> None:
    fake_av.answer(series_payload({"2024-06-18": row()}))

    client.fetch_daily("IBM")

    httpx_lines = [r.getMessage() for r in logs.records if r.name == "httpx"]
    assert any("apikey=***" in line for line in httpx_lines)
    assert KEY not in logs.text


def test_fetch_daily_symbol_case_differs_is_accepted(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient
) -> None:
    fake_av.answer(series_payload({"2024-06-18": row()}, symbol="TSCO.LON"))

    series = client.fetch_daily("tsco.lon")

    assert series.symbol == "tsco.lon"
    assert len(series.bars) == 1


def test_fetch_daily_without_key_omits_apikey_param(fake_av: FakeAlphaVantage) -> None:
    fake_av.answer({"Error Message": "the parameter apikey is invalid or missing."})
    with AlphaVantageClient(base_url=fake_av.url, api_key=SecretStr(""), timeout=5.0) as av:
        error = fetch_error(av)

    assert type(error) is BadApiKey
    assert "apikey" not in fake_av.queries[0]


def test_fetch_daily_compact_fixture_parses_100_bars(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient
) -> None:
    fake_av.answer((FIXTURES / "TIME_SERIES_DAILY_IBM_compact.json").read_bytes())

    series = client.fetch_daily("IBM")

    assert len(series.bars) == 100
    dates = [bar.date for bar in series.bars]
    assert dates == sorted(dates)
    assert len(set(dates)) == 100
    assert series.bars[-1] == DailyBar(
        date=dt.date(2024, 6, 18),
        open=Decimal("170.0000"),
        high=Decimal("170.7500"),
        low=Decimal("168.3800"),
        close=Decimal("170.5500"),
        volume=3386442,
    )
    assert str(series.bars[-1].open) == "170.0000"
    assert series.output_size == "compact"
    assert series.last_refreshed == "2024-06-18"


def test_fetch_daily_full_fixture_parses_all_rows(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient
) -> None:
    fake_av.answer((FIXTURES / "TIME_SERIES_DAILY_IBM_full_2021-06-02.json").read_bytes())

    series = client.fetch_daily("IBM", OutputSize.FULL)

    assert len(series.bars) == 5431
    assert series.bars[0].date == dt.date(1999, 11, 1)
    assert series.bars[-1].date == dt.date(2021, 6, 2)
    assert series.output_size == "full"


def test_parse_daily_payload_full_fixture_keeps_every_day() -> None:
    payload = json.loads((FIXTURES / "TIME_SERIES_DAILY_IBM_full_2021-06-02.json").read_bytes())

    series = parse_daily_payload("IBM", payload)

    assert len(series.bars) == 5431


@pytest.mark.parametrize(
    ("name", "symbol", "rows", "last_refreshed"),
    [
        ("TIME_SERIES_DAILY_TSCO.LON_compact.json", "TSCO.LON", 100, "2021-06-02"),
        ("TIME_SERIES_DAILY_AAPL_compact_truncated_2020-09-04.json", "AAPL", 5, "2020-09-04"),
        ("TIME_SERIES_DAILY_IBM_truncated_2020-05-08.json", "IBM", 2, "2020-05-08 14:07:03"),
    ],
)
def test_parse_daily_payload_other_fixtures_parse(
    name: str, symbol: str, rows: int, last_refreshed: str
) -> None:
    series = parse_daily_payload(symbol, json.loads((FIXTURES / name).read_bytes()))

    assert len(series.bars) == rows
    assert series.last_refreshed == last_refreshed
    assert all(bar.low <= bar.high for bar in series.bars)


# --- Error payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """The exception a canned answer must produce."""

    kind: type[AlphaVantageError]
    code: str
    retryable: bool
    retry_after: float | None = None


INVALID_SYMBOL = Expect(InvalidSymbol, "invalid_symbol", False)
BAD_KEY = Expect(BadApiKey, "bad_api_key", False)
DEMO_KEY = Expect(DemoKeyRejected, "bad_api_key", False)
PREMIUM_FUNCTION = Expect(PremiumEndpoint, "premium_required", False)
PREMIUM_SIZE = Expect(PremiumOutputSize, "premium_required", False)
BURST_LIMITED = Expect(BurstLimited, "rate_limited", True, 2.0)
DAILY_QUOTA = Expect(DailyQuotaExceeded, "rate_limited", True, None)
PLAN_LIMITED = Expect(PlanRateLimited, "rate_limited", True, 60.0)
RATE_LIMITED = Expect(RateLimited, "rate_limited", True, 60.0)
BAD_RESPONSE = Expect(BadResponse, "bad_response", True)
NO_FUNCTION = Expect(UnsupportedFunction, "bad_response", False)

INLINE_CASES: dict[str, tuple[object, Expect]] = {
    "invalid_symbol": (
        {"Error Message": "Invalid API call. Please retry or visit the documentation."},
        INVALID_SYMBOL,
    ),
    "unknown_error_message": ({"Error Message": "Something else went wrong."}, INVALID_SYMBOL),
    "missing_key": (
        {"Error Message": "the parameter apikey is invalid or missing. Please claim one."},
        BAD_KEY,
    ),
    "function_missing": (
        {"Error Message": "This API function (TIME_SERIES_INTRAAY) does not exist."},
        NO_FUNCTION,
    ),
    "demo_key": ({"Information": DEMO}, DEMO_KEY),
    "demo_key_2026": (
        {"Information": "The **demo** API key is for demo purposes only. Please claim your key."},
        DEMO_KEY,
    ),
    "premium_endpoint": ({"Information": PREMIUM_ENDPOINT}, PREMIUM_FUNCTION),
    "premium_outputsize": ({"Information": PREMIUM_FULL}, PREMIUM_SIZE),
    "burst": ({"Information": BURST}, BURST_LIMITED),
    "burst_short_wording": (
        {"Information": "Please consider spreading out your free API requests more sparingly."},
        BURST_LIMITED,
    ),
    "daily": ({"Information": DAILY}, DAILY_QUOTA),
    "daily_shouting": ({"Information": DAILY.upper()}, DAILY_QUOTA),
    "daily_echoes_key": ({"Information": ECHOED_KEY}, DAILY_QUOTA),
    "plan_limit": ({"Information": PLAN_LIMIT}, PLAN_LIMITED),
    "legacy_note": ({"Note": LEGACY_NOTE}, RATE_LIMITED),
    "legacy_text_under_information": ({"Information": LEGACY_NOTE}, RATE_LIMITED),
    "bare_key_in_unknown_information": (
        {"Information": f"Requests from key {KEY} are being reviewed."},
        RATE_LIMITED,
    ),
    "unknown_information": ({"Information": "Our servers are very busy right now."}, RATE_LIMITED),
    "error_beats_series": (
        {**series_payload({"2024-06-18": row()}), "Information": DAILY},
        DAILY_QUOTA,
    ),
    "empty_object": ({}, BAD_RESPONSE),
    "json_list": ([], BAD_RESPONSE),
    "json_string": ('"hello"', BAD_RESPONSE),
    "global_quote_shape": ({"Global Quote": {}}, BAD_RESPONSE),
    "meta_without_series": ({"Meta Data": {"2. Symbol": "IBM"}}, BAD_RESPONSE),
    "empty_series": (series_payload({}), BAD_RESPONSE),
    "series_without_meta": ({"Time Series (Daily)": {"2024-06-18": row()}}, BAD_RESPONSE),
    "unknown_output_size": (
        {
            **series_payload({"2024-06-18": row()}),
            "Meta Data": {"2. Symbol": "IBM", "3. Last Refreshed": "x", "4. Output Size": "?"},
        },
        BAD_RESPONSE,
    ),
    "symbol_mismatch": (
        series_payload({"2024-06-18": row()}, symbol="MSFT"),
        Expect(SymbolMismatch, "bad_response", False),
    ),
    "malformed_row": (
        series_payload({"2024-06-18": row(), "2023-02-30": row()}),
        Expect(MalformedRow, "bad_response", False),
    ),
    "truncated_json": ('{"Meta Data": {"2. Symbol": "IBM", "3. Last', BAD_RESPONSE),
    "html": ("<html><body><h1>Service temporarily down</h1></body></html>", BAD_RESPONSE),
    "empty_body": ("", BAD_RESPONSE),
    "invalid_utf8": (b"\xff\xfe\xfa{", BAD_RESPONSE),
}


def check(error: AlphaVantageError, expect: Expect) -> None:
    assert type(error) is expect.kind
    assert error.code == expect.code
    assert error.retryable is expect.retryable
    if isinstance(error, RateLimited):
        assert error.retry_after == expect.retry_after
    assert error.symbol == "IBM"
    assert str(error) == error.message
    assert error.message.strip()


@pytest.mark.parametrize("case", INLINE_CASES)
def test_fetch_daily_inline_error_payload_is_classified(
    case: str,
    fake_av: FakeAlphaVantage,
    client: AlphaVantageClient,
    logs: pytest.LogCaptureFixture,
) -> None:
    body, expect = INLINE_CASES[case]
    fake_av.answer(body if not isinstance(body, str) else body.encode())

    error = fetch_error(client)

    check(error, expect)
    assert_key_absent(error, logs)
    assert_one_log_line(logs, f"outcome={expect.kind.__name__}", f"code={expect.code}")


# Raw bodies (str/bytes) only make sense over HTTP; the rest are decoded JSON values.
DECODED_CASES = {
    name: case for name, case in INLINE_CASES.items() if not isinstance(case[0], str | bytes)
}


@pytest.mark.parametrize("case", DECODED_CASES)
def test_parse_daily_payload_inline_error_payload_is_classified(case: str) -> None:
    body, expect = DECODED_CASES[case]

    with pytest.raises(AlphaVantageError) as info:
        parse_daily_payload("IBM", body)

    check(info.value, expect)


FIXTURE_CASES = {
    "error_invalid_api_call.json": INVALID_SYMBOL,
    "error_apikey_invalid_or_missing.json": BAD_KEY,
    "error_function_does_not_exist.json": NO_FUNCTION,
    "information_demo_key.json": DEMO_KEY,
    "information_premium_endpoint.json": PREMIUM_FUNCTION,
    "information_premium_outputsize_full.json": PREMIUM_SIZE,
    "information_burst_limit_1_per_second.json": BURST_LIMITED,
    "information_daily_limit.json": DAILY_QUOTA,
    "information_daily_limit_echoes_key.json": DAILY_QUOTA,
    "information_premium_plan_rate_limit.json": PLAN_LIMITED,
    "note_rate_limit_5_per_minute.json": RATE_LIMITED,
    "empty_object.json": BAD_RESPONSE,
    "GLOBAL_QUOTE_unknown_symbol.json": BAD_RESPONSE,
    "SYMBOL_SEARCH_tesco.json": BAD_RESPONSE,
}


@pytest.mark.parametrize("name", FIXTURE_CASES)
def test_fetch_daily_fixture_error_payload_is_classified(
    name: str,
    fake_av: FakeAlphaVantage,
    client: AlphaVantageClient,
    logs: pytest.LogCaptureFixture,
) -> None:
    # The recorded echo message has the key masked; put ours back so redaction is exercised.
    fake_av.answer((FIXTURES / name).read_bytes().replace(b"XXXXXXXXXXXXXXXX", KEY.encode()))

    error = fetch_error(client)

    check(error, FIXTURE_CASES[name])
    assert_key_absent(error, logs)


def test_fetch_daily_echoed_key_is_redacted_but_message_kept(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient, logs: pytest.LogCaptureFixture
) -> None:
    fake_av.answer({"Information": ECHOED_KEY})

    error = fetch_error(client)

    assert "detected your API key as ***" in error.message
    assert "25 requests per day" in error.message
    assert_key_absent(error, logs)


def test_fetch_daily_long_upstream_text_is_truncated(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient
) -> None:
    fake_av.answer({"Error Message": "Invalid API call. " + "x" * 5000})

    error = fetch_error(client)

    assert type(error) is InvalidSymbol
    assert len(error.message) < 400


# --- HTTP and transport failures --------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 500, 403, 429])
def test_fetch_daily_non_200_raises_upstream_http_error(
    status: int,
    fake_av: FakeAlphaVantage,
    client: AlphaVantageClient,
    logs: pytest.LogCaptureFixture,
) -> None:
    # A proxy error page that quotes the request URL, key included.
    page = f"<html>Unavailable: /query?apikey={KEY} (key {KEY})</html>" + "x" * 3000
    fake_av.answer(page, status=status, content_type="text/html")

    error = fetch_error(client)

    assert type(error) is UpstreamHTTPError
    assert isinstance(error, UpstreamHTTPError)
    assert (error.code, error.retryable, error.status_code) == ("upstream_error", True, status)
    assert f"HTTP {status}" in error.message
    assert "apikey=***" in error.message
    assert len(error.message) < 400
    assert_key_absent(error, logs)


def test_fetch_daily_slow_server_raises_upstream_timeout(
    fake_av: FakeAlphaVantage, logs: pytest.LogCaptureFixture
) -> None:
    fake_av.answer(series_payload({"2024-06-18": row()}), delay=10.0)
    with AlphaVantageClient(base_url=fake_av.url, api_key=SecretStr(KEY), timeout=0.2) as av:
        started = time.perf_counter()
        error = fetch_error(av)
        elapsed = time.perf_counter() - started

    assert type(error) is UpstreamTimeout
    assert (error.code, error.retryable) == ("upstream_error", True)
    assert elapsed < 5.0  # gave up long before the answer came (however loaded the machine)
    assert error.__cause__ is None
    assert error.__context__ is None
    assert_key_absent(error, logs)


def test_fetch_daily_connection_closed_raises_upstream_unavailable(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient, logs: pytest.LogCaptureFixture
) -> None:
    fake_av.answer(b"", hang_up=True)

    error = fetch_error(client)

    assert type(error) is UpstreamUnavailable
    assert (error.code, error.retryable) == ("upstream_error", True)
    assert error.__context__ is None
    assert_key_absent(error, logs)


def test_fetch_daily_connection_refused_raises_upstream_unavailable(
    logs: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/query"
    with AlphaVantageClient(base_url=url, api_key=SecretStr(KEY), timeout=2.0) as av:
        error = fetch_error(av)

    assert type(error) is UpstreamUnavailable
    assert error.__context__ is None
    assert_key_absent(error, logs)


def test_fetch_daily_truncated_fixture_body_raises_bad_response(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient, logs: pytest.LogCaptureFixture
) -> None:
    body = json.dumps(series_payload({"2024-06-18": row(), "2024-06-17": row()})).encode()
    fake_av.answer(body[: len(body) // 2])

    error = fetch_error(client)

    assert type(error) is BadResponse
    assert "truncated or invalid JSON" in error.message
    assert error.__context__ is None
    assert_key_absent(error, logs)


def test_fetch_daily_html_body_names_content_type(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient
) -> None:
    fake_av.answer("<!DOCTYPE html><p>maintenance</p>", content_type="text/html; charset=utf-8")

    error = fetch_error(client)

    assert type(error) is BadResponse
    assert "non-JSON" in error.message
    assert "text/html" in error.message


# --- Malformed rows ---------------------------------------------------------------------------

MALFORMED_ROWS: dict[str, tuple[str, object, str]] = {
    "missing_field": (
        "2024-06-18",
        {k: v for k, v in row().items() if k != "4. close"},
        "4. close",
    ),
    "non_numeric_price": ("2024-06-18", row(open_="abc"), "not a number"),
    "nan_price": ("2024-06-18", row(close="NaN"), "not finite"),
    "infinite_price": ("2024-06-18", row(high="Infinity"), "not finite"),
    "negative_price": ("2024-06-18", row(low="-1.5"), "negative"),
    "exponent_price": ("2024-06-18", row(open_="1e2"), "not a plain decimal"),
    "padded_price": ("2024-06-18", row(open_=" 10"), "not a plain decimal"),
    "numeric_json_price": ("2024-06-18", {**row(), "1. open": 10.5}, "not a string"),
    "negative_volume": ("2024-06-18", row(volume="-10"), "negative"),
    "fractional_volume": ("2024-06-18", row(volume="10.5"), "not a whole number"),
    "exponent_volume": ("2024-06-18", row(volume="1e3"), "not a whole number"),
    "huge_volume": ("2024-06-18", row(volume="9" * 20), "too large"),
    "impossible_date": ("2023-02-30", row(), "does not exist"),
    "slashed_date": ("2023/02/01", row(), "not YYYY-MM-DD"),
    "compact_date": ("20230201", row(), "not YYYY-MM-DD"),
    "high_below_low": ("2024-06-18", row(high="9", low="10"), "below low"),
    "row_not_object": ("2024-06-18", ["10", "12"], "not an object"),
}


@pytest.mark.parametrize("case", MALFORMED_ROWS)
def test_parse_daily_payload_malformed_row_rejects_payload(case: str) -> None:
    day, bad_row, problem = MALFORMED_ROWS[case]
    rows: dict[str, Any] = {"2024-06-20": row(), day: bad_row, "2024-06-21": row()}

    with pytest.raises(MalformedRow) as info:
        parse_daily_payload("IBM", series_payload(rows))

    error = info.value
    assert (error.code, error.retryable, error.symbol, error.date) == (
        "bad_response",
        False,
        "IBM",
        day,
    )
    assert "IBM" in error.message
    assert day in error.message
    assert problem in error.message


def test_fetch_daily_malformed_row_names_symbol_and_date(
    fake_av: FakeAlphaVantage, client: AlphaVantageClient, logs: pytest.LogCaptureFixture
) -> None:
    fake_av.answer(series_payload({"2024-06-18": row(), "2024-06-17": row(close="n/a")}))

    error = fetch_error(client)

    assert isinstance(error, MalformedRow)
    assert error.date == "2024-06-17"
    assert "IBM on 2024-06-17" in error.message
    assert_key_absent(error, logs)


def test_client_rejects_bad_arguments(client: AlphaVantageClient) -> None:
    with pytest.raises(ValueError, match="outputsize"):
        client.fetch_daily("IBM", "huge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="symbol"):
        client.fetch_daily("  ")
    with pytest.raises(ValueError, match="timeout"):
        AlphaVantageClient(base_url="http://127.0.0.1/query", api_key=None, timeout=0)
