"""The AlphaVantage client against a canned server on loopback: the call, errors, secrecy."""

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
    InvalidSymbol,
    MalformedRow,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.upstream.parser import DailyBar
from tests.shared.upstream.payloads import (
    BAD_KEY,
    BAD_RESPONSE,
    BURST_LIMITED,
    DAILY_QUOTA,
    DEMO_KEY,
    ECHOED_KEY,
    INLINE_CASES,
    INVALID_SYMBOL,
    KEY,
    NO_FUNCTION,
    PLAN_LIMITED,
    PREMIUM_FUNCTION,
    PREMIUM_SIZE,
    RATE_LIMITED,
    check,
    row,
    series_payload,
)
from tests.support import ALPHAVANTAGE_FIXTURES as FIXTURES


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
