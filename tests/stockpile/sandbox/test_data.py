"""The sandbox's building blocks in-process: bar generation, body cache, limit parsing."""

from datetime import date

from shared.core.rate_windows import RateWindow
from stockpile.sandbox.data import SeriesStore, generate_bars
from stockpile.sandbox.limits import ServedCallLimiter

END = date(2024, 7, 8)


def test_generate_bars_is_prefix_stable() -> None:
    long = generate_bars("IBM", 500)
    short = generate_bars("ibm", 120)
    assert len(long) == 500
    assert len(short) == 120
    for column in ("opens", "highs", "lows", "closes", "volumes"):
        assert getattr(long, column)[:120] == getattr(short, column)


def test_generate_bars_differs_per_symbol() -> None:
    assert generate_bars("IBM", 50).closes != generate_bars("IBMX", 50).closes


def test_store_full_history_is_built_once_then_cached() -> None:
    # How fast a history is built is a benchmark's question (bench/), not a test's.
    store = SeriesStore()
    first = store.body("SPEED", END, full=True, csv=False)
    again = store.body("SPEED", END, full=True, csv=False)
    assert again is first
    assert store.body("SPEED", END, full=False, csv=False) is not first


def test_store_bodies_evicted_beyond_budget() -> None:
    store = SeriesStore(max_body_bytes=50_000)
    first = store.body("AAA", END, full=False, csv=False)
    store.body("BBB", END, full=False, csv=False)
    store.body("CCC", END, full=False, csv=False)
    again = store.body("AAA", END, full=False, csv=False)
    assert again == first
    assert again is not first  # rendered again after eviction, with identical bytes


def test_store_bars_reused_for_earlier_end() -> None:
    store = SeriesStore()
    later = store.body("PFX", date(2024, 12, 31), full=True, csv=True)
    earlier = store.body("PFX", END, full=True, csv=True)
    assert later.endswith(earlier[len(b"timestamp,open,high,low,close,volume\r\n") :])


def test_limiter_sliding_window_boundary() -> None:
    limiter = ServedCallLimiter([RateWindow(2, 10)])
    assert limiter.acquire("k", 100.0) is None
    assert limiter.acquire("k", 105.0) is None
    assert limiter.acquire("k", 109.9) == RateWindow(2, 10)
    assert limiter.acquire("k", 110.0) is None  # the call at 100.0 has left the window
    assert limiter.acquire("k", 114.9) == RateWindow(2, 10)
    assert limiter.acquire("other", 114.9) is None


def test_limiter_reports_longest_full_window() -> None:
    limiter = ServedCallLimiter([RateWindow(1, 1), RateWindow(2, 86_400)])
    assert limiter.acquire("k", 0.0) is None
    assert limiter.acquire("k", 0.5) == RateWindow(1, 1)
    assert limiter.acquire("k", 2.0) is None
    assert limiter.acquire("k", 2.1) == RateWindow(2, 86_400)
    assert limiter.acquire("k", 5.0) == RateWindow(2, 86_400)
