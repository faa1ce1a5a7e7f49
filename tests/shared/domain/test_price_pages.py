"""Listing pages (shared/domain/price_pages.py) equal the plain LIMIT/OFFSET query's, byte for byte.

A first page reads its rows straight from the index, a later one by its keys, a symbol's deep
page starts from its monthly day counts (migration 0004) and a symbol's count over a long range
comes from the monthly sums: all are checked against `ORDER BY date, symbol LIMIT .. OFFSET ..`
and `count(*)` over financial_data itself, through the API's read pool (its generic plans), for
random filters, limits and offsets (past the end too), on days with gaps, and after writes that
change, delete and move days.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from shared.domain import price_pages
from shared.domain.price_pages import PricePage, price_page
from shared.domain.prices import PriceFilter, price_text, upsert_prices
from tests.shared.domain.prices_data import (
    FIRST_DAY,
    SYMBOLS,
    BlockingReads,
    apply_write,
    date_ranges,
    write,
)
from tests.support import history

# The listing as the contract defines it, every filter optional (NULL: not set).
PLAIN_PAGE_SQL = f"""
SELECT symbol, date, {price_text("open_price")}, {price_text("close_price")}, volume
FROM financial_data
WHERE ($1::text IS NULL OR symbol = $1) AND ($2::date IS NULL OR date >= $2)
  AND ($3::date IS NULL OR date <= $3)
ORDER BY date, symbol LIMIT $4 OFFSET $5
"""
PLAIN_COUNT_SQL = """
SELECT count(*) FROM financial_data
WHERE ($1::text IS NULL OR symbol = $1) AND ($2::date IS NULL OR date >= $2)
  AND ($3::date IS NULL OR date <= $3)
"""


class Pages(BlockingReads):
    """The listing through the API's read pool, and the plain query's answer to compare with."""

    def page(self, filters: PriceFilter, limit: int, offset: int) -> PricePage:
        return self.run(price_page(self.pool.fetch, filters, limit=limit, offset=offset))

    def plain(self, filters: PriceFilter, limit: int, offset: int) -> PricePage:
        bounds = (filters.symbol, filters.start_date, filters.end_date)
        rows = self.run(self.pool.fetch(PLAIN_PAGE_SQL, *bounds, limit, offset))
        count = self.run(self.pool.fetch(PLAIN_COUNT_SQL, *bounds))[0][0]
        return PricePage(count=count, rows=[tuple(row) for row in rows])


@pytest.fixture
def pages(database_url: str) -> Iterator[Pages]:
    pages = Pages(database_url)
    yield pages
    pages.close()


# Each test over stored data runs three times: with the thresholds as configured, and with
# every page and count forced by month, or never.
@pytest.fixture(autouse=True, params=["as configured", "always by month", "never by month"])
def thresholds(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Where pages jump and counts add up by month: the test data (600-odd days a symbol) is
    too short for the configured offset, so each path is also forced."""
    if request.param != "as configured":
        at = 1 if request.param == "always by month" else 10**9
        monkeypatch.setattr(price_pages, "JUMP_FROM_OFFSET", at)
        monkeypatch.setattr(price_pages, "SUM_FROM_DAYS", at)
    return str(request.param)


def assert_same_page(pages: Pages, filters: PriceFilter, limit: int, offset: int) -> None:
    found = pages.page(filters, limit, offset)
    expected = pages.plain(filters, limit, offset)
    assert found.count == expected.count, (filters, limit, offset)
    # The same rows in the same order, every field as the response renders it.
    assert [tuple(row) for row in found.rows] == expected.rows, (filters, limit, offset)


filters = st.builds(
    lambda symbol, bounds, which: PriceFilter(
        symbol,
        bounds[0] if which in ("start", "both") else None,
        bounds[1] if which in ("end", "both") else None,
    ),
    st.sampled_from([*SYMBOLS, "MSFT", None]),
    date_ranges(),
    st.sampled_from(["none", "start", "end", "both"]),
)
# Mostly small limits (deep pages), offsets anywhere from the first page to past the end.
limits = st.one_of(st.integers(1, 30), st.sampled_from([100, 1000]))
offsets = st.one_of(st.integers(0, 40), st.integers(0, 2 * 600), st.integers(0, 3 * 600 + 50))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(filters=filters, limit=limits, offset=offsets)
def test_pages_equal_the_plain_query(
    stored: Session, pages: Pages, filters: PriceFilter, limit: int, offset: int
) -> None:
    assert_same_page(pages, filters, limit, offset)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    writes=st.lists(write, min_size=1, max_size=4),
    pages_drawn=st.lists(st.tuples(filters, limits, offsets), min_size=4, max_size=8),
    seed=st.integers(0, 2**32),
)
def test_pages_stay_equal_after_writes_that_change_old_days(
    stored: Session,
    pages: Pages,
    writes: list[tuple[str, str, dt.date, int]],
    pages_drawn: list[tuple[PriceFilter, int, int]],
    seed: int,
) -> None:
    stored.rollback()  # a clean transaction even after a failed example
    rng = random.Random(seed)
    for change in writes:
        apply_write(stored, rng, change)
    for drawn in pages_drawn:
        assert_same_page(pages, *drawn)


def test_pages_starting_at_every_month_edge(stored: Session, pages: Pages) -> None:
    # Offsets at, just before and just after each month's first row, with and without a start
    # date in the middle of a month, and a month emptied by a delete (its sums row stays, 0).
    stored.execute(
        text(
            "DELETE FROM financial_data"
            " WHERE symbol = 'IBM' AND date BETWEEN '2020-03-01' AND '2020-03-31'"
        )
    )
    stored.commit()
    for symbol, start in itertools.product(["IBM", "BRK.B"], [None, dt.date(2020, 2, 12)]):
        edges = stored.execute(
            text(
                "SELECT sum(days) OVER (ORDER BY month) - days FROM financial_data_monthly"
                " WHERE symbol = :s AND month >= :m ORDER BY month"
            ),
            {"s": symbol, "m": (start or FIRST_DAY).replace(day=1)},
        ).scalars()
        # With a start date, the rows of its month before it shift every edge.
        before = stored.execute(
            text(
                "SELECT count(*) FROM financial_data WHERE symbol = :s AND date >= :m AND date < :d"
            ),
            {"s": symbol, "m": (start or FIRST_DAY).replace(day=1), "d": start or FIRST_DAY},
        ).scalar_one()
        for edge in edges:
            for offset in {max(0, int(edge) - before + delta) for delta in (-1, 0, 1)}:
                assert_same_page(pages, PriceFilter(symbol, start), 3, offset)


def test_the_read_pool_plans_each_statement_once(pages: Pages) -> None:
    async def settings_and_plans() -> tuple[str, int]:
        for page in range(3):
            await price_page(pages.pool.fetch, PriceFilter("IBM"), limit=5, offset=5 * page)
        mode = (await pages.pool.fetch("SHOW plan_cache_mode"))[0][0]
        custom = await pages.pool.fetch("SELECT sum(custom_plans) FROM pg_prepared_statements")
        return str(mode), int(custom[0][0] or 0)

    assert pages.run(settings_and_plans()) == ("force_generic_plan", 0)


def test_page_count_matches_with_and_without_dates(session: Session, pages: Pages) -> None:
    upsert_prices(session, "IBM", history(40))
    upsert_prices(session, "AAPL", history(25))
    session.commit()
    everything = pages.page(PriceFilter(), 10, 60)
    assert everything.count == 65
    assert [(row[0], row[1]) for row in everything.rows] == [
        ("IBM", day) for day in [bar.date for bar in history(40)][35:]
    ]
    ibm = pages.page(PriceFilter(symbol="IBM"), 5, 0)
    assert ibm.count == 40
    assert len(ibm.rows) == 5
    ranged = PriceFilter(symbol="AAPL", start_date=dt.date(2000, 1, 10))
    assert pages.page(ranged, 5, 0).count == 25 - 5
    both_ends = PriceFilter(start_date=dt.date(2000, 1, 10), end_date=dt.date(2000, 1, 14))
    assert pages.page(both_ends, 3, 0).count == 2 * 5
    unknown = pages.page(PriceFilter(symbol="MSFT"), 5, 0)
    assert (unknown.count, unknown.rows) == (0, [])


def test_page_past_the_end_is_empty_with_the_true_count(session: Session, pages: Pages) -> None:
    upsert_prices(session, "IBM", history(7))
    session.commit()
    past = pages.page(PriceFilter(symbol="IBM"), 5, 10)
    assert (past.count, past.rows) == (7, [])
