"""AlphaVantage answers for the client and parser tests: its messages, payload builders, and the
exception each kind of answer must raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
)

KEY = "SECRETKEY-TEST-1234"

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
