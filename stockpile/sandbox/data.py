"""Deterministic synthetic daily bars per symbol, rendered like AlphaVantage's TIME_SERIES_DAILY.

Every symbol's history starts at ``SERIES_START`` (where AlphaVantage's full US histories start)
and is a random walk seeded from a SHA-256 of the upper-cased symbol, generated day by day in
trading-day order. A day's bar therefore depends only on the symbol and its position since the
start, so the same symbol shows the same history whatever end date is asked for.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import threading
from array import array
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date

from shared.core.market_calendar import trading_days
from stockpile.sandbox.config import SERIES_START

COMPACT_ROWS = 100
_SCALE = 10_000  # prices are kept as integer ten-thousandths: exact 4-decimal output
_MIN_VOLUME = 100_000
_MAX_VOLUME = 50_000_000
# Pull of the log price back toward its starting level: keeps 25 years of a 1-2 % daily walk
# in a plausible band (a standard deviation of roughly 20-40 %) instead of drifting to pennies.
_MEAN_REVERSION = 0.0015


@dataclass(frozen=True)
class Bars:
    """Daily bars as parallel columns, oldest first; prices in ten-thousandths of a dollar."""

    opens: array[int]
    highs: array[int]
    lows: array[int]
    closes: array[int]
    volumes: array[int]

    def __len__(self) -> int:
        return len(self.closes)


def generate_bars(symbol: str, count: int) -> Bars:
    """The first ``count`` bars of ``symbol``'s history (a prefix of any longer history)."""
    digest = hashlib.sha256(symbol.upper().encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    # random() is C code; random.gauss() is Python and made full histories several times slower.
    # A sum of three uniforms minus 1.5 (sd 0.5) is a close enough bell shape for fake prices.
    uniform = rng.random
    exp = math.exp
    anchor = math.log(20.0) + uniform() * math.log(20.0)  # start price log-uniform in 20..400
    sigma = 0.01 + uniform() * 0.01  # daily volatility 1-2 %
    log_base_volume = math.log(300_000) + uniform() * math.log(30.0)
    bars = Bars(array("q"), array("q"), array("q"), array("q"), array("q"))
    log_price = anchor
    for _ in range(count):
        log_open = log_price + (uniform() + uniform() + uniform() - 1.5) * sigma * 0.6
        log_close = (
            log_open
            + (uniform() + uniform() + uniform() - 1.5) * sigma * 2.0
            + _MEAN_REVERSION * (anchor - log_open)
        )
        open_ = int(exp(log_open) * _SCALE + 0.5)
        close = int(exp(log_close) * _SCALE + 0.5)
        top, bottom = (open_, close) if open_ > close else (close, open_)
        volume = int(exp(log_base_volume + (uniform() + uniform() + uniform() - 1.5) * 0.7))
        bars.opens.append(open_)
        bars.highs.append(int(top * (1.0 + uniform() * uniform() * sigma) + 0.5))
        bars.lows.append(max(1, int(bottom * (1.0 - uniform() * uniform() * sigma) + 0.5)))
        bars.closes.append(close)
        bars.volumes.append(min(_MAX_VOLUME, max(_MIN_VOLUME, volume)))
        log_price = log_close
    return bars


@functools.lru_cache(maxsize=8)
def _days_until(end: date) -> tuple[str, ...]:
    return tuple(day.isoformat() for day in trading_days(SERIES_START, end))


# Integer ten-thousandths divided by 10_000 format exactly back to 4 decimals with %.4f.
_JSON_ROW = (
    '        "%s": {\n'
    '            "1. open": "%.4f",\n'
    '            "2. high": "%.4f",\n'
    '            "3. low": "%.4f",\n'
    '            "4. close": "%.4f",\n'
    '            "5. volume": "%d"\n'
    "        }"
)
_CSV_ROW = "%s,%.4f,%.4f,%.4f,%.4f,%d"


def _rows(template: str, days: tuple[str, ...], bars: Bars, first: int) -> list[str]:
    o, h, lo, c, v = bars.opens, bars.highs, bars.lows, bars.closes, bars.volumes
    return [
        template % (days[i], o[i] / _SCALE, h[i] / _SCALE, lo[i] / _SCALE, c[i] / _SCALE, v[i])
        for i in range(len(days) - 1, first - 1, -1)
    ]


def _json_body(label: str, days: tuple[str, ...], bars: Bars, first: int, full: bool) -> bytes:
    return (
        "{\n"
        '    "Meta Data": {\n'
        '        "1. Information": "Daily Prices (open, high, low, close) and Volumes",\n'
        f'        "2. Symbol": {json.dumps(label)},\n'
        f'        "3. Last Refreshed": "{days[-1]}",\n'
        f'        "4. Output Size": "{"Full size" if full else "Compact"}",\n'
        '        "5. Time Zone": "US/Eastern"\n'
        "    },\n"
        '    "Time Series (Daily)": {\n'
        + ",\n".join(_rows(_JSON_ROW, days, bars, first))
        + "\n    }\n}"
    ).encode()


def _csv_body(days: tuple[str, ...], bars: Bars, first: int) -> bytes:
    lines = ["timestamp,open,high,low,close,volume", *_rows(_CSV_ROW, days, bars, first), ""]
    return "\r\n".join(lines).encode()


class SeriesStore:
    """Renders TIME_SERIES_DAILY bodies and caches bars and bodies; safe to share across threads."""

    def __init__(self, max_symbols: int = 64, max_body_bytes: int = 64 * 1024 * 1024) -> None:
        self._max_symbols = max_symbols
        self._max_body_bytes = max_body_bytes
        self._bars: OrderedDict[str, Bars] = OrderedDict()
        self._bodies: OrderedDict[tuple[str, date, bool, bool], bytes] = OrderedDict()
        self._body_bytes = 0
        self._lock = threading.Lock()

    def body(self, symbol: str, end: date, *, full: bool, csv: bool) -> bytes:
        """The JSON or CSV body for ``symbol`` up to the trading day ``end``, newest first."""
        key = (symbol, end, full, csv)
        with self._lock:
            cached = self._bodies.get(key)
            if cached is not None:
                self._bodies.move_to_end(key)
                return cached
        days = _days_until(end)
        bars = self._bars_for(symbol.upper(), len(days))
        first = 0 if full else max(0, len(days) - COMPACT_ROWS)
        body = _csv_body(days, bars, first) if csv else _json_body(symbol, days, bars, first, full)
        self._remember(key, body)
        return body

    def _bars_for(self, symbol: str, count: int) -> Bars:
        with self._lock:
            bars = self._bars.get(symbol)
            if bars is not None and len(bars) >= count:
                self._bars.move_to_end(symbol)
                return bars
        # Generated outside the lock; two threads racing on one symbol compute equal bars.
        bars = generate_bars(symbol, count)
        with self._lock:
            self._bars[symbol] = bars
            while len(self._bars) > self._max_symbols:
                self._bars.popitem(last=False)
        return bars

    def _remember(self, key: tuple[str, date, bool, bool], body: bytes) -> None:
        with self._lock:
            if key in self._bodies:
                return
            self._bodies[key] = body
            self._body_bytes += len(body)
            while self._body_bytes > self._max_body_bytes and self._bodies:
                _, dropped = self._bodies.popitem(last=False)
                self._body_bytes -= len(dropped)
