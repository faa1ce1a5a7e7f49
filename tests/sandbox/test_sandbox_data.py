"""The sandbox's building blocks in-process: bar generation, body cache, limit parsing."""

import time
from datetime import date

from shared.rate_windows import RateWindow
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


def test_store_full_history_fast_and_cached() -> None:
    store = SeriesStore()
    store.body("WARM", END, full=False, csv=False)  # calendar built once per process
    started = time.perf_counter()
    first = store.body("SPEED", END, full=True, csv=False)
    first_seconds = time.perf_counter() - started
    started = time.perf_counter()
    again = store.body("SPEED", END, full=True, csv=False)
    cached_seconds = time.perf_counter() - started
    assert again is first
    # About 30 ms on an idle 2-core box; the bound leaves room for a loaded CI machine.
    assert first_seconds < 0.25
    assert cached_seconds < 0.005


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
