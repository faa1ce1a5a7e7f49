"""Data answers of the sandbox over real HTTP: shapes, sizes, determinism, calendar, invariants."""

import json
import re
import statistics
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.core.market_calendar import last_completed_trading_day, trading_days
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import SandboxHandle, running_sandbox
from tests.support import ALPHAVANTAGE_FIXTURES

TODAY = date(2024, 7, 8)  # a Monday
CONFIG = SandboxConfig(limits=None, today=TODAY, premium=True)
ROW_KEYS = ["1. open", "2. high", "3. low", "4. close", "5. volume"]
PRICE = re.compile(r"\d+\.\d{4}")


def daily(http: httpx.Client, symbol: str = "IBM", **params: str) -> httpx.Response:
    query = {"function": "TIME_SERIES_DAILY", "symbol": symbol, "apikey": "testkey", **params}
    response = http.get("/query", params=query)
    assert response.status_code == 200
    return response


def series(response: httpx.Response) -> dict[str, dict[str, str]]:
    body: dict[str, Any] = response.json()
    rows: dict[str, dict[str, str]] = body["Time Series (Daily)"]
    return rows


def csv_rows(response: httpx.Response) -> list[list[str]]:
    return [line.split(",") for line in response.text.split("\r\n")[1:-1]]


def test_json_compact_meta_data_and_rows(http: httpx.Client) -> None:
    response = daily(http)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["Meta Data", "Time Series (Daily)"]
    assert body["Meta Data"] == {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": "IBM",
        "3. Last Refreshed": "2024-07-08",
        "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern",
    }
    rows = series(response)
    assert len(rows) == 100
    dates = list(rows)
    assert dates == sorted(dates, reverse=True)
    assert dates[0] == "2024-07-08"
    for row in rows.values():
        assert list(row) == ROW_KEYS
        assert all(PRICE.fullmatch(row[key]) for key in ROW_KEYS[:4])
        assert row["5. volume"].isdigit()


def test_json_layout_matches_recorded_alphavantage_text(http: httpx.Client) -> None:
    recorded = ALPHAVANTAGE_FIXTURES / "TIME_SERIES_DAILY_IBM_compact.json"

    def skeleton(text: str) -> list[str]:
        text = re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", text)
        return re.sub(r'"\d+(\.\d+)?"', '"NUMBER"', text).splitlines()[:40]

    assert skeleton(daily(http).text) == skeleton(recorded.read_text())


def test_csv_compact_shape(http: httpx.Client) -> None:
    response = daily(http, datatype="csv")
    assert response.headers["content-type"] == "application/x-download"
    text = response.text
    assert text.startswith("timestamp,open,high,low,close,volume\r\n")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    rows = csv_rows(response)
    assert len(rows) == 100
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)
    assert rows[0][0] == "2024-07-08"
    assert all(PRICE.fullmatch(value) for row in rows for value in row[1:5])


def test_csv_values_equal_json_values(http: httpx.Client) -> None:
    json_rows = series(daily(http, "MSFT"))
    for day, *values in csv_rows(daily(http, "MSFT", datatype="csv")):
        assert values == [json_rows[day][key] for key in ROW_KEYS]


def test_full_history_since_1999(http: httpx.Client) -> None:
    response = daily(http, outputsize="full")
    assert response.json()["Meta Data"]["4. Output Size"] == "Full size"
    rows = series(response)
    dates = [date.fromisoformat(day) for day in rows]
    assert dates[-1] == date(1999, 11, 1)
    assert dates[0] == TODAY
    assert dates[0] - dates[-1] > timedelta(days=20 * 365)
    assert dates == sorted(trading_days(date(1999, 11, 1), TODAY), reverse=True)


def test_compact_is_the_newest_100_rows_of_full(http: httpx.Client) -> None:
    full = series(daily(http, "AAPL", outputsize="full"))
    compact = series(daily(http, "AAPL"))
    assert list(compact.items()) == list(full.items())[:100]


def test_full_csv_matches_full_json(http: httpx.Client) -> None:
    full = series(daily(http, "AAPL", outputsize="full"))
    rows = csv_rows(daily(http, "AAPL", outputsize="full", datatype="csv"))
    assert [row[0] for row in rows] == list(full)


@pytest.mark.parametrize("outputsize", ["default", "", "FULLER", "compact"])
def test_unrecognised_outputsize_is_compact(http: httpx.Client, outputsize: str) -> None:
    response = daily(http, outputsize=outputsize)
    assert response.json()["Meta Data"]["4. Output Size"] == "Compact"
    assert len(series(response)) == 100


def test_parameter_values_are_case_insensitive(http: httpx.Client) -> None:
    response = http.get(
        "/query",
        params={
            "function": "time_series_daily",
            "symbol": "ibm",
            "outputsize": "FULL",
            "datatype": "CSV",
            "apikey": "k",
        },
    )
    assert response.headers["content-type"] == "application/x-download"
    assert response.text == daily(http, "IBM", outputsize="full", datatype="csv").text


def test_unknown_datatype_and_extra_parameters_give_json(http: httpx.Client) -> None:
    response = daily(http, datatype="xml", entitlement="delayed", foo="bar")
    assert response.headers["content-type"] == "application/json"
    assert response.text == daily(http).text


def test_symbol_is_echoed_as_sent(http: httpx.Client) -> None:
    lower = daily(http, "ibm")
    assert lower.json()["Meta Data"]["2. Symbol"] == "ibm"
    assert series(lower) == series(daily(http, "IBM"))


def test_symbols_have_different_histories(http: httpx.Client) -> None:
    assert series(daily(http, "IBM")) != series(daily(http, "AAPL"))


def test_same_symbol_same_body_across_calls_and_processes(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    first = [daily(http, "TSCO.LON").content, daily(http, "NVDA", datatype="csv").content]
    again = [daily(http, "TSCO.LON").content, daily(http, "NVDA", datatype="csv").content]
    assert first == again
    with (
        running_sandbox(CONFIG) as other,
        httpx.Client(base_url=other.root_url, timeout=10) as other_http,
    ):
        assert other.base_url != sandbox.base_url
        elsewhere = [
            daily(other_http, "TSCO.LON").content,
            daily(other_http, "NVDA", datatype="csv").content,
        ]
    assert elsewhere == first


def test_history_does_not_depend_on_end_date(http: httpx.Client, sandbox: SandboxHandle) -> None:
    before = series(daily(http, "GOOG", outputsize="full"))
    sandbox.configure(today=date(2025, 3, 14))
    later = series(daily(http, "GOOG", outputsize="full"))
    assert len(later) > len(before)
    assert {day: later[day] for day in before} == before


@pytest.mark.parametrize("symbol", ["IBM", "AAPL", "X", "BRK.B", "600104.SHH"])
def test_full_history_ohlc_invariants(http: httpx.Client, symbol: str) -> None:
    rows = list(series(daily(http, symbol, outputsize="full")).values())
    closes: list[float] = []
    for row in rows:
        open_, high, low, close = (float(row[key]) for key in ROW_KEYS[:4])
        assert high >= max(open_, close)
        assert 0 < low <= min(open_, close)
        assert 100_000 <= int(row["5. volume"]) <= 50_000_000
        assert 1 < close < 2000
        closes.append(close)
    moves = [abs(new / old - 1) for new, old in zip(closes, closes[1:], strict=False)]
    assert 0.005 < statistics.mean(moves) < 0.025
    assert max(moves) < 0.15


def test_calendar_has_no_weekends_or_holidays(http: httpx.Client) -> None:
    days = [date.fromisoformat(day) for day in series(daily(http, outputsize="full"))]
    assert all(day.weekday() < 5 for day in days)
    assert date(2024, 7, 4) not in days
    assert date(2024, 3, 29) not in days  # Good Friday
    assert date(2001, 9, 11) not in days
    assert date(2024, 7, 5) in days
    assert date(2024, 7, 3) in days


@pytest.mark.parametrize(
    ("today", "last"),
    [
        (date(2024, 7, 4), "2024-07-03"),  # holiday
        (date(2024, 7, 5), "2024-07-05"),  # a trading day counts from its evening
        (date(2024, 7, 6), "2024-07-05"),  # Saturday
        (date(2024, 3, 31), "2024-03-28"),  # Easter Sunday after Good Friday
    ],
)
def test_today_sets_last_refreshed(
    http: httpx.Client, sandbox: SandboxHandle, today: date, last: str
) -> None:
    sandbox.configure(today=today)
    response = daily(http)
    assert response.json()["Meta Data"]["3. Last Refreshed"] == last
    assert next(iter(series(response))) == last
    assert csv_rows(daily(http, datatype="csv"))[0][0] == last


def test_real_clock_ends_at_last_completed_trading_day(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.configure(today=None)
    before = last_completed_trading_day(datetime.now(UTC))
    last = daily(http).json()["Meta Data"]["3. Last Refreshed"]
    after = last_completed_trading_day(datetime.now(UTC))
    assert last in {before.isoformat(), after.isoformat()}


def test_recorded_fixture_rows_have_same_keys(http: httpx.Client) -> None:
    recorded = ALPHAVANTAGE_FIXTURES / "TIME_SERIES_DAILY_IBM_full_2021-06-02.json"
    real = json.loads(recorded.read_text())
    ours = daily(http, outputsize="full").json()
    assert list(ours["Meta Data"]) == list(real["Meta Data"])
    assert ours["Meta Data"]["4. Output Size"] == real["Meta Data"]["4. Output Size"]
    real_first = next(iter(real["Time Series (Daily)"].values()))
    assert list(next(iter(series(daily(http)).values()))) == list(real_first)
