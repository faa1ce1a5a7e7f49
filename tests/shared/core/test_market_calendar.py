from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from shared.core.market_calendar import (
    NEW_YORK,
    is_trading_day,
    last_completed_trading_day,
    market_close_at,
    previous_trading_day,
    trading_days,
)


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 7, 6),  # Saturday
        date(2024, 7, 7),  # Sunday
        date(2024, 7, 4),  # Independence Day
        date(2024, 12, 25),  # Christmas
        date(2024, 3, 29),  # Good Friday: an exchange holiday, not a federal one
        date(2024, 1, 15),  # Martin Luther King Jr. Day
        date(2001, 9, 11),  # one-off closure
        date(2022, 12, 26),  # Christmas on a Sunday, observed Monday
    ],
)
def test_is_trading_day_closed_days(day: date) -> None:
    assert not is_trading_day(day)


@pytest.mark.parametrize(
    "day",
    [
        date(2024, 7, 3),  # early close still trades
        date(2024, 7, 5),
        date(2024, 3, 28),
        date(2024, 11, 11),  # Veterans Day: federal holiday, market open
        date(2024, 10, 14),  # Columbus Day: market open
        date(2021, 12, 31),  # New Year on Saturday is not moved to Friday
    ],
)
def test_is_trading_day_open_days(day: date) -> None:
    assert is_trading_day(day)


def test_trading_days_inclusive_range_skips_weekend_and_holiday() -> None:
    assert trading_days(date(2024, 7, 1), date(2024, 7, 8)) == [
        date(2024, 7, 1),
        date(2024, 7, 2),
        date(2024, 7, 3),
        date(2024, 7, 5),
        date(2024, 7, 8),
    ]


def test_trading_days_single_and_empty_ranges() -> None:
    assert trading_days(date(2024, 7, 5), date(2024, 7, 5)) == [date(2024, 7, 5)]
    assert trading_days(date(2024, 7, 6), date(2024, 7, 7)) == []
    assert trading_days(date(2024, 7, 8), date(2024, 7, 1)) == []


def test_trading_days_2024_count() -> None:
    # 262 weekdays minus 10 NYSE holidays on weekdays.
    assert len(trading_days(date(2024, 1, 1), date(2024, 12, 31))) == 252


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2024, 7, 8), date(2024, 7, 5)),  # Monday -> Friday
        (date(2024, 7, 5), date(2024, 7, 3)),  # skips the holiday
        (date(2024, 7, 6), date(2024, 7, 5)),  # from a Saturday
        (date(2024, 4, 1), date(2024, 3, 28)),  # skips Easter weekend and Good Friday
        (date(2001, 9, 17), date(2001, 9, 10)),  # the four-day 2001 closure
    ],
)
def test_previous_trading_day_strictly_before(day: date, expected: date) -> None:
    assert previous_trading_day(day) == expected


def test_market_close_at_is_new_york_four_pm() -> None:
    close = market_close_at(date(2024, 1, 10))
    assert close.tzinfo == NEW_YORK
    assert close.astimezone(UTC) == _utc("2024-01-10T21:00:00")  # EST, UTC-5
    assert market_close_at(date(2024, 7, 10)).astimezone(UTC) == _utc("2024-07-10T20:00:00")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2024-07-12T22:00:00", date(2024, 7, 12)),  # Friday evening after close
        ("2024-07-13T15:00:00", date(2024, 7, 12)),  # Saturday
        ("2024-07-14T23:00:00", date(2024, 7, 12)),  # Sunday evening
        ("2024-07-15T14:00:00", date(2024, 7, 12)),  # Monday before close -> Friday
        ("2024-07-15T20:10:00", date(2024, 7, 12)),  # Monday 16:10 EDT: closed, not settled
        ("2024-07-05T13:00:00", date(2024, 7, 3)),  # morning after the holiday
        ("2024-07-05T23:00:00", date(2024, 7, 5)),  # evening of the same day
        ("2024-07-04T23:00:00", date(2024, 7, 3)),  # evening of the holiday itself
        ("2024-03-29T23:00:00", date(2024, 3, 28)),  # Good Friday evening
        ("2024-07-16T02:00:00", date(2024, 7, 15)),  # 22:00 NY, still Monday there
        ("2024-07-16T04:30:00", date(2024, 7, 15)),  # 00:30 NY Tuesday, before its close
    ],
)
def test_last_completed_trading_day_fixed_clocks(now: str, expected: date) -> None:
    assert last_completed_trading_day(_utc(now)) == expected


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # 2024-03-10 (Sunday) starts EDT: Monday 16:30 EDT is 20:30 UTC.
        ("2024-03-11T20:29:00", date(2024, 3, 8)),
        ("2024-03-11T20:30:00", date(2024, 3, 11)),
        ("2024-03-11T20:31:00", date(2024, 3, 11)),
        # 2024-11-03 (Sunday) returns to EST: Monday 16:30 EST is 21:30 UTC.
        ("2024-11-04T20:31:00", date(2024, 11, 1)),  # only 15:31 EST
        ("2024-11-04T21:29:00", date(2024, 11, 1)),
        ("2024-11-04T21:31:00", date(2024, 11, 4)),
        # The Friday before each switch, still on the old offset.
        ("2024-03-08T21:29:00", date(2024, 3, 7)),
        ("2024-03-08T21:31:00", date(2024, 3, 8)),
        ("2024-11-01T20:29:00", date(2024, 10, 31)),
        ("2024-11-01T20:31:00", date(2024, 11, 1)),
    ],
)
def test_last_completed_trading_day_dst_boundaries(now: str, expected: date) -> None:
    assert last_completed_trading_day(_utc(now)) == expected


def test_last_completed_trading_day_accepts_any_timezone() -> None:
    # 05:31 Tuesday in Tokyo is 16:31 Monday in New York.
    tokyo = datetime(2024, 7, 16, 5, 31, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert last_completed_trading_day(tokyo) == date(2024, 7, 15)
    assert last_completed_trading_day(tokyo - timedelta(minutes=2)) == date(2024, 7, 12)


def test_last_completed_trading_day_custom_settle() -> None:
    now = _utc("2024-07-15T20:05:00")  # 16:05 EDT
    assert last_completed_trading_day(now, settle=timedelta(0)) == date(2024, 7, 15)
    assert last_completed_trading_day(now, settle=timedelta(minutes=10)) == date(2024, 7, 12)
    assert last_completed_trading_day(now, settle=timedelta(minutes=5)) == date(2024, 7, 15)


def test_last_completed_trading_day_naive_datetime_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        last_completed_trading_day(datetime(2024, 7, 15, 22, 0))
