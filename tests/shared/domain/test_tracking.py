"""When a tracked symbol is due for a refresh, with a fixed clock, against real PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.core.db import get_engine
from shared.core.market_calendar import NEW_YORK, last_completed_trading_day
from shared.core.models import utcnow
from shared.domain.prices import upsert_prices
from shared.domain.tracking import (
    ENQUEUE_LOCK_KEY,
    MAX_RETRY_INTERVAL,
    enqueue_due_refreshes,
    get_tracked,
    mark_failed,
    retry_interval,
    start_tracking,
    symbols_due,
    track,
)
from tests.support import bar, history

MIN_INTERVAL = timedelta(minutes=30)


def new_york(text_: str) -> datetime:
    """A wall-clock time in New York (whatever its UTC offset that day)."""
    return datetime.fromisoformat(text_).replace(tzinfo=NEW_YORK)


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


def store_through(session: Session, symbol: str, day: str) -> None:
    """Stored prices for `symbol` whose newest day is `day`."""
    upsert_prices(session, symbol, [bar("2024-01-02", "1.00", "1.10"), bar(day, "1.00", "1.20")])
    session.commit()


def add_job(session: Session, symbol: str, created_at: datetime, status: str = "succeeded") -> None:
    session.execute(
        text(
            "INSERT INTO jobs (id, symbol, status, source, attempts, created_at)"
            " VALUES (:id, :symbol, :status, 'beat', 1, :created_at)"
        ),
        {"id": uuid.uuid4(), "symbol": symbol, "status": status, "created_at": created_at},
    )
    session.commit()


def due(session: Session, now: datetime) -> list[str]:
    return symbols_due(session, now=now, min_interval=MIN_INTERVAL)


@pytest.mark.parametrize(
    ("now", "stored_through", "expected_due"),
    [
        # Friday 2024-06-07: the day's bar counts from 16:30 New York on.
        pytest.param(new_york("2024-06-07T16:45"), "2024-06-06", True, id="friday-evening-behind"),
        pytest.param(
            new_york("2024-06-07T16:45"), "2024-06-07", False, id="friday-evening-current"
        ),
        pytest.param(new_york("2024-06-07T16:29"), "2024-06-06", False, id="friday-before-settle"),
        pytest.param(new_york("2024-06-07T16:30"), "2024-06-06", True, id="friday-at-settle"),
        pytest.param(new_york("2024-06-08T12:00"), "2024-06-07", False, id="saturday-current"),
        pytest.param(new_york("2024-06-08T12:00"), "2024-06-06", True, id="saturday-behind"),
        pytest.param(new_york("2024-06-09T23:59"), "2024-06-07", False, id="sunday-night-current"),
        pytest.param(new_york("2024-06-10T10:00"), "2024-06-07", False, id="monday-morning"),
        pytest.param(new_york("2024-06-10T15:59"), "2024-06-07", False, id="monday-before-close"),
        pytest.param(new_york("2024-06-10T10:00"), "2024-06-06", True, id="monday-friday-missing"),
        # 2024-07-04 is a holiday: the next morning the last trading day is 07-03.
        pytest.param(new_york("2024-07-04T20:00"), "2024-07-03", False, id="holiday-evening"),
        pytest.param(new_york("2024-07-05T09:00"), "2024-07-03", False, id="after-holiday-morning"),
        pytest.param(new_york("2024-07-05T09:00"), "2024-07-02", True, id="after-holiday-behind"),
        pytest.param(new_york("2024-07-05T17:00"), "2024-07-03", True, id="after-holiday-evening"),
        pytest.param(new_york("2024-07-05T17:00"), "2024-07-05", False, id="after-holiday-current"),
        # 2024-03-10: clocks spring forward at 02:00 (EST -5 to EDT -4).
        pytest.param(utc("2024-03-10T06:59"), "2024-03-08", False, id="spring-sunday-before"),
        pytest.param(utc("2024-03-10T07:01"), "2024-03-08", False, id="spring-sunday-after"),
        pytest.param(utc("2024-03-10T07:01"), "2024-03-07", True, id="spring-sunday-behind"),
        pytest.param(utc("2024-03-11T03:30"), "2024-03-08", False, id="spring-sunday-2330-edt"),
        pytest.param(utc("2024-03-11T20:29"), "2024-03-08", False, id="spring-monday-1629-edt"),
        pytest.param(utc("2024-03-11T20:30"), "2024-03-08", True, id="spring-monday-1630-edt"),
        pytest.param(utc("2024-03-11T20:30"), "2024-03-11", False, id="spring-monday-current"),
        # 2024-11-03: clocks fall back at 02:00 (EDT -4 to EST -5); 01:30 happens twice.
        pytest.param(utc("2024-11-03T05:30"), "2024-11-01", False, id="fall-sunday-first-0130"),
        pytest.param(utc("2024-11-03T06:30"), "2024-11-01", False, id="fall-sunday-second-0130"),
        pytest.param(utc("2024-11-03T06:30"), "2024-10-31", True, id="fall-sunday-behind"),
        pytest.param(utc("2024-11-04T04:30"), "2024-11-01", False, id="fall-sunday-2330-est"),
        pytest.param(utc("2024-11-04T20:45"), "2024-11-01", False, id="fall-monday-1545-est"),
        pytest.param(utc("2024-11-04T21:29"), "2024-11-01", False, id="fall-monday-1629-est"),
        pytest.param(utc("2024-11-04T21:30"), "2024-11-01", True, id="fall-monday-1630-est"),
        pytest.param(utc("2024-11-04T21:30"), "2024-11-04", False, id="fall-monday-current"),
    ],
)
def test_symbols_due_follows_the_new_york_trading_calendar(
    session: Session, now: datetime, stored_through: str, expected_due: bool
) -> None:
    store_through(session, "IBM", stored_through)
    store_through(session, "AAPL", "2024-12-31")  # current at every `now` above
    assert due(session, now) == (["IBM"] if expected_due else [])


def test_symbols_due_without_stored_prices_is_due(session: Session) -> None:
    assert due(session, new_york("2024-06-10T10:00")) == ["AAPL", "IBM"]


def test_symbols_due_untracked_symbols_are_never_due(session: Session) -> None:
    store_through(session, "MSFT", "2024-06-03")
    store_through(session, "AAPL", "2024-06-07")
    assert due(session, new_york("2024-06-10T10:00")) == ["IBM"]


def test_symbols_due_rejects_a_naive_clock(session: Session) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due(session, datetime(2024, 6, 10, 10, 0))


@pytest.mark.parametrize(
    ("job_age", "expected_due"),
    [
        (timedelta(minutes=5), False),
        (timedelta(minutes=29, seconds=59), False),
        (MIN_INTERVAL, True),
        (timedelta(hours=3), True),
    ],
)
def test_symbols_due_waits_min_interval_after_a_job(
    session: Session, job_age: timedelta, expected_due: bool
) -> None:
    now = new_york("2024-06-10T10:00")
    store_through(session, "IBM", "2024-06-06")
    store_through(session, "AAPL", "2024-06-07")
    add_job(session, "IBM", now - job_age)
    assert due(session, now) == (["IBM"] if expected_due else [])


@pytest.mark.parametrize("status", ["queued", "running"])
def test_symbols_due_skips_a_symbol_with_an_old_job_in_flight(
    session: Session, status: str
) -> None:
    now = new_york("2024-06-10T10:00")
    add_job(session, "IBM", now - timedelta(hours=5), status=status)
    assert due(session, now) == ["AAPL"]


def test_symbols_due_job_in_the_future_of_a_fixed_clock_counts_as_recent(session: Session) -> None:
    now = new_york("2024-06-10T10:00")
    add_job(session, "IBM", now + timedelta(minutes=1))
    assert due(session, now) == ["AAPL"]


@pytest.mark.parametrize(
    ("tries", "last_age", "expected_due"),
    [
        (2, timedelta(minutes=45), False),  # second try for the day waits 1 h
        (2, timedelta(hours=1), True),
        (3, timedelta(minutes=119), False),  # third waits 2 h
        (3, timedelta(hours=2), True),
        (9, timedelta(hours=5, minutes=59), False),  # capped at 6 h
        (9, timedelta(hours=6), True),
    ],
)
def test_symbols_due_backs_off_while_the_day_stays_missing(
    session: Session, tries: int, last_age: timedelta, expected_due: bool
) -> None:
    now = new_york("2024-06-10T10:00")  # target Friday 06-07, final from Friday 16:30
    store_through(session, "IBM", "2024-06-06")
    store_through(session, "AAPL", "2024-06-07")
    for i in reversed(range(tries)):
        add_job(session, "IBM", now - last_age - timedelta(seconds=i))
    assert due(session, now) == (["IBM"] if expected_due else [])


def test_symbols_due_jobs_before_the_bar_was_final_do_not_count_as_tries(
    session: Session,
) -> None:
    now = new_york("2024-06-07T17:10")  # the Friday bar is final since 16:30
    store_through(session, "IBM", "2024-06-06")
    store_through(session, "AAPL", "2024-06-07")
    for minutes in (70, 55, 40):  # 16:00, 16:15, 16:30 minus one second: all before it was final
        add_job(session, "IBM", now - timedelta(minutes=minutes, seconds=1))
    assert due(session, now) == ["IBM"]


@pytest.mark.parametrize(
    ("tries", "min_interval", "expected"),
    [
        (0, MIN_INTERVAL, MIN_INTERVAL),
        (1, MIN_INTERVAL, MIN_INTERVAL),
        (2, MIN_INTERVAL, timedelta(hours=1)),
        (4, MIN_INTERVAL, timedelta(hours=4)),
        (5, MIN_INTERVAL, MAX_RETRY_INTERVAL),
        (10_000, MIN_INTERVAL, MAX_RETRY_INTERVAL),
        (3, timedelta(hours=12), timedelta(hours=12)),  # a longer min_interval is never cut
    ],
)
def test_retry_interval_doubles_up_to_the_cap(
    tries: int, min_interval: timedelta, expected: timedelta
) -> None:
    assert retry_interval(tries, min_interval) == expected


@pytest.mark.parametrize(
    ("retry_in", "expected_due"),
    [(timedelta(minutes=1), False), (timedelta(days=6), False), (timedelta(0), True)],
)
def test_symbols_due_parked_symbol_waits_for_retry_at(
    session: Session, retry_in: timedelta, expected_due: bool
) -> None:
    now = new_york("2024-06-10T10:00")
    store_through(session, "AAPL", "2024-06-07")
    mark_failed(session, "IBM", code="invalid_symbol", message="Invalid", retry_at=now + retry_in)
    session.commit()
    assert due(session, now) == (["IBM"] if expected_due else [])


def test_symbols_due_parked_symbol_is_due_after_retry_at(session: Session) -> None:
    now = new_york("2024-06-10T10:00")
    store_through(session, "AAPL", "2024-06-07")
    mark_failed(session, "IBM", code="invalid_symbol", message="Invalid", retry_at=now)
    add_job(session, "IBM", now - timedelta(days=7))  # the job that failed a week ago
    session.commit()
    assert due(session, now + timedelta(minutes=1)) == ["IBM"]


def _job_rows(session: Session) -> list[tuple[str, str, str]]:
    rows = session.execute(text("SELECT symbol, status, source FROM jobs ORDER BY symbol")).all()
    return [(row.symbol, row.status, row.source) for row in rows]


def test_enqueue_due_refreshes_creates_one_beat_job_per_due_symbol(session: Session) -> None:
    now = utcnow()
    store_through(session, "AAPL", last_completed_trading_day(now).isoformat())
    created = enqueue_due_refreshes(now=now, min_interval=MIN_INTERVAL)
    assert len(created) == 1
    assert _job_rows(session) == [("IBM", "queued", "beat")]


def test_enqueue_due_refreshes_again_creates_no_duplicate(session: Session) -> None:
    now = utcnow()
    first = enqueue_due_refreshes(now=now, min_interval=MIN_INTERVAL)
    # Even with no minimum interval, the in-flight jobs stop a second round.
    again = enqueue_due_refreshes(now=now + timedelta(seconds=1), min_interval=timedelta(0))
    assert len(first) == 2
    assert again == []
    assert _job_rows(session) == [("AAPL", "queued", "beat"), ("IBM", "queued", "beat")]


def test_enqueue_due_refreshes_concurrent_runs_create_each_job_once(session: Session) -> None:
    barrier = threading.Barrier(4)
    results: list[list[uuid.UUID]] = []

    def run() -> None:
        barrier.wait()
        results.append(enqueue_due_refreshes(now=utcnow(), min_interval=MIN_INTERVAL))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sum(len(ids) for ids in results) == 2
    assert len(results) == 4
    assert _job_rows(session) == [("AAPL", "queued", "beat"), ("IBM", "queued", "beat")]


def test_enqueue_due_refreshes_skips_while_another_run_holds_the_lock(session: Session) -> None:
    with get_engine().connect() as other, other.begin():
        other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ENQUEUE_LOCK_KEY})
        assert enqueue_due_refreshes(now=utcnow(), min_interval=MIN_INTERVAL) == []
    assert _job_rows(session) == []
    assert len(enqueue_due_refreshes(now=utcnow(), min_interval=MIN_INTERVAL)) == 2


def test_start_tracking_new_symbol_without_prices_needs_a_refresh(session: Session) -> None:
    result = start_tracking(session, "MSFT", now=utcnow())
    session.commit()
    assert (result.created, result.resumed, result.needs_refresh) == (True, False, True)
    assert get_tracked(session, "MSFT") is not None


def test_start_tracking_new_symbol_with_current_prices_needs_none(session: Session) -> None:
    now = utcnow()
    store_through(session, "MSFT", last_completed_trading_day(now).isoformat())
    result = start_tracking(session, "MSFT", now=now)
    assert (result.created, result.needs_refresh) == (True, False)


def test_start_tracking_already_tracked_changes_nothing(session: Session) -> None:
    result = start_tracking(session, "IBM", now=utcnow())
    assert (result.created, result.resumed, result.needs_refresh) == (False, False, False)


def test_start_tracking_parked_symbol_is_resumed_and_refreshed(session: Session) -> None:
    now = utcnow()
    upsert_prices(session, "IBM", history(3))
    mark_failed(session, "IBM", code="invalid_symbol", message="gone", retry_at=now + timedelta(1))
    session.commit()
    result = start_tracking(session, "IBM", now=now)
    session.commit()
    assert (result.created, result.resumed, result.needs_refresh) == (False, True, True)
    coverage = get_tracked(session, "IBM")
    assert coverage is not None
    assert (coverage.failure_code, coverage.failed_at, coverage.retry_at) == (None, None, None)
    assert due(session, now) == ["AAPL", "IBM"]


def test_track_twice_reports_the_second_as_existing(session: Session) -> None:
    assert track(session, "MSFT") is True
    assert track(session, "MSFT") is False


def test_get_tracked_coverage_counts_stored_rows(session: Session) -> None:
    upsert_prices(session, "IBM", history(7, start=date(2024, 1, 1)))
    session.commit()
    coverage = get_tracked(session, "IBM")
    assert coverage is not None
    assert (coverage.first_date, coverage.last_date, coverage.rows) == (
        date(2024, 1, 1),
        date(2024, 1, 9),
        7,
    )
    assert get_tracked(session, "MSFT") is None
