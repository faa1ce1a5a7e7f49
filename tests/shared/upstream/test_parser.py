"""Parsing decoded AlphaVantage answers: recorded series, classified errors, rejected rows."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.upstream.errors import (
    AlphaVantageError,
    MalformedRow,
)
from shared.upstream.parser import parse_daily_payload
from tests.shared.upstream.payloads import (
    INLINE_CASES,
    check,
    row,
    series_payload,
)
from tests.support import ALPHAVANTAGE_FIXTURES as FIXTURES


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
