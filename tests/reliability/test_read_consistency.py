"""Readers never see a half-written history while a 6,500-day upsert is replaced again and again.

A writer alternates between two versions of one symbol's full history (every price of version
B is version A's plus 1000); readers poll the statistics and pages of prices over HTTP. Every
read must show one whole version: the count never between, no page mixing versions, no day
whose open and close come from different versions.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import ROUND_HALF_UP, Decimal

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from shared.domain.prices import upsert_prices
from tests.support import Bar, history, wait_until

logger = logging.getLogger(__name__)

SYMBOL = "CONS"
DAYS = 6_500
SHIFT = Decimal(1000)
# Reads go on until enough of them overlapped enough rewrites (at most this long).
MAX_RUN_SECONDS = 60.0
MIN_REWRITES = 10
MIN_READS = 40
STATS_PARAMS = {"symbol": SYMBOL, "start_date": "1990-01-01", "end_date": "2100-01-01"}


def _average(values: Sequence[Decimal]) -> float:
    return float((sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.01"), ROUND_HALF_UP))


def _shifted(bars: Sequence[Bar]) -> list[Bar]:
    return [
        replace(
            b, open=b.open + SHIFT, high=b.high + SHIFT, low=b.low + SHIFT, close=b.close + SHIFT
        )
        for b in bars
    ]


def _repeat_until(stop: threading.Event, action: Callable[[], None]) -> int:
    done = 0
    while not stop.is_set():
        action()
        done += 1
    return done


def test_readers_see_one_whole_version_while_a_full_history_is_rewritten(
    session: Session, api_url: str
) -> None:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    versions = [history(DAYS), _shifted(history(DAYS))]
    expected_stats = {
        (_average([b.open for b in bars]), _average([b.close for b in bars])) for bars in versions
    }
    with Session(engine) as writer_session:
        upsert_prices(writer_session, SYMBOL, versions[0])
        writer_session.commit()

    seen_stats: list[tuple[float, float]] = []
    bad_pages: list[str] = []
    seen_versions: set[bool] = set()
    writes = 0

    def write() -> None:
        nonlocal writes
        writes += 1
        with Session(engine) as writer_session:
            upsert_prices(writer_session, SYMBOL, versions[writes % 2])
            writer_session.commit()

    def read_stats(client: httpx.Client) -> None:
        data = client.get("/api/statistics", params=STATS_PARAMS).json()["data"]
        seen_stats.append((data["average_daily_open_price"], data["average_daily_close_price"]))

    def read_page(client: httpx.Client, page: int) -> None:
        body = client.get(
            "/api/financial_data", params={"symbol": SYMBOL, "limit": 1000, "page": page}
        ).json()
        shifted = {Decimal(row["open_price"]) >= SHIFT for row in body["data"]}
        pairs_ok = all(
            Decimal(row["close_price"]) - Decimal(row["open_price"]) == Decimal("0.5")
            for row in body["data"]
        )
        if body["pagination"]["count"] != DAYS or len(shifted) != 1 or not pairs_ok:
            bad_pages.append(f"page {page}: count {body['pagination']['count']}, {shifted}")
        seen_versions.update(shifted)

    stop = threading.Event()
    with (
        httpx.Client(base_url=api_url, timeout=30) as stats_client,
        httpx.Client(base_url=api_url, timeout=30) as page_client,
        ThreadPoolExecutor(max_workers=3) as pool,
    ):
        pages = iter(range(10**9))
        futures = [
            pool.submit(_repeat_until, stop, write),
            pool.submit(_repeat_until, stop, lambda: read_stats(stats_client)),
            pool.submit(_repeat_until, stop, lambda: read_page(page_client, next(pages) % 7 + 1)),
        ]
        started = time.monotonic()
        try:
            # Until enough reads overlapped enough rewrites, or a thread died (its error shows).
            wait_until(
                lambda: (
                    any(future.done() for future in futures)
                    or (
                        writes >= MIN_REWRITES
                        and len(seen_stats) >= MIN_READS
                        and expected_stats <= set(seen_stats)
                        and seen_versions == {False, True}
                    )
                ),
                timeout=MAX_RUN_SECONDS,
                what="reads of both versions",
            )
        finally:
            stop.set()
        elapsed = time.monotonic() - started
        rewrites, stats_reads, page_reads = (future.result(timeout=60) for future in futures)

    logger.info(
        "read consistency: %d rewrites of %d days, %d statistics and %d page reads in %.1f s",
        rewrites,
        DAYS,
        stats_reads,
        page_reads,
        elapsed,
    )
    assert set(seen_stats) == expected_stats  # only whole versions, and both: reads overlapped
    assert bad_pages == []
    assert seen_versions == {False, True}
