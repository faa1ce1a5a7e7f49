"""Statistics from monthly sums (migration 0004) equal the plain average over the rows.

Property-based: random ranges (inside one month, across year ends, at month edges, past the
stored days) and random writes (upserts changing old days, deletes, moves, truncate), each
checked against `round(avg(...))` over financial_data itself, digit for digit.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from shared.domain.prices import (
    NOTHING,
    PriceStatistics,
    price_statistics,
    split_by_month,
)
from tests.shared.domain.prices_data import (
    FIRST_DAY,
    LAST_DAY,
    SYMBOLS,
    BlockingReads,
    apply_write,
    date_ranges,
    write,
)

# The contract's statistics as the plain aggregate over every stored row of the range.
PLAIN_SQL = (
    "SELECT count(*), round(avg(open_price), 2), round(avg(close_price), 2), round(avg(volume))"
    " FROM financial_data WHERE symbol = $1 AND date BETWEEN $2 AND $3"
)
# What the triggers should hold: the monthly sums recomputed from the rows.
MONTHLY_SQL = """
SELECT symbol, month, days, open_sum, close_sum, volume_sum FROM financial_data_monthly
WHERE days <> 0
EXCEPT ALL
SELECT symbol, date_trunc('month', date)::date, count(*), sum(open_price), sum(close_price),
       sum(volume) FROM financial_data GROUP BY 1, 2
"""
RECOMPUTED_SQL = """
SELECT symbol, date_trunc('month', date)::date, count(*), sum(open_price), sum(close_price),
       sum(volume) FROM financial_data GROUP BY 1, 2
EXCEPT ALL
SELECT symbol, month, days, open_sum, close_sum, volume_sum FROM financial_data_monthly
"""


class Reader(BlockingReads):
    """Statistics through the API's read pool, and the plain aggregate to compare with."""

    def statistics(self, symbol: str, start: dt.date, end: dt.date) -> PriceStatistics | None:
        return self.run(price_statistics(self.pool.fetch, symbol, start, end))

    def plain(self, symbol: str, start: dt.date, end: dt.date) -> PriceStatistics | None:
        [row] = self.run(self.pool.fetch(PLAIN_SQL, symbol, start, end))
        days, open_, close, volume = row
        if days == 0:
            return None
        return PriceStatistics(days, open_, close, int(volume))


@pytest.fixture
def reader(database_url: str) -> Iterator[Reader]:
    reader = Reader(database_url)
    yield reader
    reader.close()


def assert_identical(reader: Reader, symbol: str, start: dt.date, end: dt.date) -> None:
    expected = reader.plain(symbol, start, end)
    found = reader.statistics(symbol, start, end)
    assert found == expected, (symbol, start, end)
    if expected is not None and found is not None:
        # Byte-identical: the same digits and the same scale, as the response renders them.
        assert [str(found.average_open), str(found.average_close)] == [
            str(expected.average_open),
            str(expected.average_close),
        ]


def assert_sums_exact(session: Session) -> None:
    session.rollback()
    assert session.execute(text(MONTHLY_SQL)).all() == []
    assert session.execute(text(RECOMPUTED_SQL)).all() == []


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(symbol=st.sampled_from([*SYMBOLS, "MSFT"]), bounds=date_ranges())
def test_statistics_equal_the_plain_average_over_any_range(
    stored: Session, reader: Reader, symbol: str, bounds: tuple[dt.date, dt.date]
) -> None:
    assert_identical(reader, symbol, *bounds)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(write, min_size=1, max_size=4),
    ranges=st.lists(date_ranges(), min_size=3, max_size=6),
    seed=st.integers(0, 2**32),
)
def test_statistics_stay_identical_after_writes_that_change_old_days(
    stored: Session,
    reader: Reader,
    writes: list[tuple[str, str, dt.date, int]],
    ranges: list[tuple[dt.date, dt.date]],
    seed: int,
) -> None:
    stored.rollback()  # a clean transaction even after a failed example
    rng = random.Random(seed)
    for change in writes:
        apply_write(stored, rng, change)
    assert_sums_exact(stored)
    for symbol in SYMBOLS:
        for start, end in ranges:
            assert_identical(reader, symbol, start, end)


def test_truncate_empties_the_sums(stored: Session, reader: Reader) -> None:
    assert reader.statistics("IBM", FIRST_DAY, LAST_DAY) is not None
    stored.execute(text("TRUNCATE financial_data"))
    stored.commit()
    assert stored.execute(text("SELECT count(*) FROM financial_data_monthly")).scalar_one() == 0
    assert reader.statistics("IBM", FIRST_DAY, LAST_DAY) is None


def test_a_range_of_only_emptied_months_has_no_stored_day(stored: Session, reader: Reader) -> None:
    stored.execute(
        text(
            "DELETE FROM financial_data"
            " WHERE symbol = 'IBM' AND date BETWEEN '2020-03-01' AND '2020-04-30'"
        )
    )
    stored.commit()
    assert reader.statistics("IBM", dt.date(2020, 3, 1), dt.date(2020, 4, 30)) is None


@pytest.mark.parametrize(
    ("start", "end", "months", "head", "tail"),
    [
        ("2020-01-01", "2020-01-31", ("2020-01-01", "2020-01-01"), None, None),
        ("2020-01-02", "2020-01-30", None, ("2020-01-02", "2020-01-30"), None),
        (
            "2019-12-15",
            "2020-02-10",
            ("2020-01-01", "2020-01-01"),
            ("2019-12-15", "2019-12-31"),
            ("2020-02-01", "2020-02-10"),
        ),
        ("2020-02-01", "2020-02-29", ("2020-02-01", "2020-02-01"), None, None),
        ("2020-01-31", "2020-02-01", None, ("2020-01-31", "2020-02-01"), None),
        ("0001-01-01", "9999-12-31", ("0001-01-01", "9999-12-01"), None, None),
        ("9999-12-02", "9999-12-31", None, ("9999-12-02", "9999-12-31"), None),
        ("0001-01-01", "0001-01-30", None, ("0001-01-01", "0001-01-30"), None),
    ],
)
def test_split_by_month(
    start: str,
    end: str,
    months: tuple[str, str] | None,
    head: tuple[str, str] | None,
    tail: tuple[str, str] | None,
) -> None:
    def dates(pair: tuple[str, str] | None) -> tuple[dt.date, dt.date]:
        return (
            NOTHING
            if pair is None
            else (dt.date.fromisoformat(pair[0]), dt.date.fromisoformat(pair[1]))
        )

    split = split_by_month(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
    assert split == (dates(months), dates(head), dates(tail))
