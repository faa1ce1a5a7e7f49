"""The rate-window syntax of ALPHAVANTAGE_RATE_LIMITS and the window type."""

import re

import pytest

from shared.core.rate_windows import RateWindow, parse_rate_limits


def test_parse_rate_limits_contract_default() -> None:
    windows = parse_rate_limits("1/second,25/day")

    assert windows == (RateWindow(limit=1, seconds=1), RateWindow(limit=25, seconds=86400))
    assert [w.label for w in windows] == ["1/second", "25/day"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5/minute", (RateWindow(5, 60),)),
        (" 2 / hour , 30/Day ", (RateWindow(2, 3600), RateWindow(30, 86400))),
        ("3/sec,4/d", (RateWindow(3, 1), RateWindow(4, 86400))),
        ("8/2second,100/7days", (RateWindow(8, 2), RateWindow(100, 7 * 86400))),
        ("75/minutes,100/hours", (RateWindow(75, 60), RateWindow(100, 3600))),
    ],
)
def test_parse_rate_limits_valid_shapes(text: str, expected: tuple[RateWindow, ...]) -> None:
    assert parse_rate_limits(text) == expected


def test_parse_rate_limits_all_abbreviations() -> None:
    windows = parse_rate_limits("1/s,2/min,3/h,4/d")

    assert [w.seconds for w in windows] == [1, 60, 3600, 86400]


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("1/second,,25/day", "''"),
        ("1/second,", "''"),
        ("0/second", "'0/second'"),
        ("-1/second", "'-1/second'"),
        ("1.5/second", "'1.5/second'"),
        ("5/fortnight", "'5/fortnight'"),
        ("five/day", "'five/day'"),
        ("5", "'5'"),
        ("5/", "'5/'"),
        ("/day", "'/day'"),
        ("5/0second", "'5/0second'"),
        ("1/second;25/day", "'1/second;25/day'"),
        ("1/second,25/day,x", "'x'"),
    ],
)
def test_parse_rate_limits_invalid_part_named(text: str, bad_part: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid rate limit {re.escape(bad_part)} in"):
        parse_rate_limits(text)


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_rate_limits_empty_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        parse_rate_limits(text)


def test_parse_rate_limits_duplicate_length_rejected() -> None:
    with pytest.raises(ValueError, match=r"same window length twice: 1/second, 2/second"):
        parse_rate_limits("1/second,25/day,2/s")


@pytest.mark.parametrize(
    ("window", "label"),
    [
        (RateWindow(25, 86400), "25/day"),
        (RateWindow(8, 2), "8/2second"),
        (RateWindow(10, 120), "10/2minute"),
        (RateWindow(3, 7200), "3/2hour"),
        (RateWindow(5, 90), "5/90second"),
    ],
)
def test_rate_window_label_round_trips_through_parser(window: RateWindow, label: str) -> None:
    assert window.label == label
    assert parse_rate_limits(label) == (window,)


@pytest.mark.parametrize(("limit", "seconds"), [(0, 1), (1, 0), (-3, 60)])
def test_rate_window_rejects_non_positive_numbers(limit: int, seconds: int) -> None:
    with pytest.raises(ValueError, match="must be at least"):
        RateWindow(limit, seconds)
