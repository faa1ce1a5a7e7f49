"""Classify a decoded TIME_SERIES_DAILY answer and parse its exact prices.

AlphaVantage answers most errors with HTTP 200 and a JSON body keyed by `Error Message`,
`Information` or `Note`, and its wording changes every year or two. Answers are therefore
classified by key plus short case-insensitive substrings, never whole sentences, and throttle
markers are checked before entitlement markers because throttle messages also advertise premium.

Classification decisions:

- `Error Message` mentioning the API key is `BadApiKey`; "function ... does not exist" is
  `UnsupportedFunction` (a client or endpoint bug, not the symbol's fault); any other
  `Error Message` is `InvalidSymbol`: the symbol is the only parameter that varies between calls.
- The plain `RateLimited` is raised for the legacy `Note` ("5 calls per minute and 500 calls per
  day", sent on the per-minute limit) and for an `Information`/`Note` text that matches nothing
  known: those keys have carried throttle messages far more often than anything else, a throttle
  makes the whole fleet back off instead of spending more calls, and the job's attempt cap bounds
  the cost if the new text turns out to be permanent. The message keeps the upstream text.
- When an error key and a time series arrive together, the error wins.
- `SymbolMismatch`: the payload's `2. Symbol` must equal the requested symbol, ignoring case;
  rows are never stored under a symbol AlphaVantage did not report. The same answer would come
  back, so it is permanent.
- `MalformedRow`: one bad row (missing field, non-numeric, NaN/Infinity or negative price,
  non-integer or negative volume, impossible date, high below low) rejects the whole payload.
  AlphaVantage serves the same data until its next daily refresh, so an immediate re-fetch would
  spend quota on the same bad row; it is permanent, and the next scheduled refresh tries again.

Every message is redacted (the key, `apikey=` values, the echoed-key message), and upstream text
in it is cut to 200 characters.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.core.models import OutputSize
from shared.core.redaction import redact
from shared.upstream.errors import (
    AlphaVantageError,
    BadApiKey,
    BadResponse,
    BurstLimited,
    DailyQuotaExceeded,
    DemoKeyRejected,
    InvalidSymbol,
    MalformedRow,
    PlanRateLimited,
    PremiumEndpoint,
    PremiumOutputSize,
    RateLimited,
    SymbolMismatch,
    UnsupportedFunction,
)

SNIPPET_CHARS = 200


@dataclass(frozen=True, slots=True)
class DailyBar:
    """One trading day of raw, as-traded prices."""

    date: dt.date
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int


@dataclass(frozen=True, slots=True)
class DailySeries:
    """A parsed TIME_SERIES_DAILY answer for the requested `symbol`; `bars` ascend by date.

    `output_size` is what AlphaVantage reported ("compact" or "full"), which can be compact even
    when full was asked for; `last_refreshed` is verbatim and may carry a time of day.
    """

    symbol: str
    bars: tuple[DailyBar, ...]
    last_refreshed: str
    output_size: OutputSize


_SERIES_KEY = "Time Series (Daily)"
_META_KEY = "Meta Data"
_FIELDS = ("1. open", "2. high", "3. low", "4. close", "5. volume")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PRICE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_INTEGER = re.compile(r"[0-9]+")
_MAX_VOLUME = 2**63 - 1  # PostgreSQL BIGINT

_DEMO_KEY = re.compile(r"\bdemo\W{0,4}api key|demo purposes")
_BURST = re.compile(r"per second|per-second|spreading out|burst")
_PLAN_LIMIT = re.compile(r"premium@|higher api call volume")
_DAILY_LIMIT = re.compile(r"per day|daily (?:rate )?limit|detected your api key")
_ENTITLEMENT = re.compile(r"premium (?:endpoint|feature)")

Scrub = Callable[[str], str]


def parse_daily_payload(symbol: str, payload: object) -> DailySeries:
    """Classify a decoded TIME_SERIES_DAILY JSON body and parse it; raises AlphaVantageError."""
    return Answer(symbol, redact).parse(payload)


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer for one symbol, with the redaction to apply to anything quoted from it."""

    symbol: str
    scrub: Scrub

    def snippet(self, text: str) -> str:
        text = self.scrub(text)
        return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "…"

    def parse(self, payload: object) -> DailySeries:
        if not isinstance(payload, dict):
            raise BadResponse(
                f"AlphaVantage answered {self.symbol!r} with a JSON {type(payload).__name__}, "
                "not an object",
                symbol=self.symbol,
            )
        self._raise_for_message(payload)
        if _SERIES_KEY not in payload:
            if not payload:
                raise BadResponse(
                    f"AlphaVantage answered {self.symbol!r} with an empty JSON object "
                    "(symbol temporarily unsupported or an upstream fault)",
                    symbol=self.symbol,
                )
            keys = ", ".join(sorted(str(key) for key in payload))
            raise BadResponse(
                f"AlphaVantage answered {self.symbol!r} without {_SERIES_KEY!r} "
                f"(keys: {self.snippet(keys)})",
                symbol=self.symbol,
            )
        return self._series(payload)

    def _raise_for_message(self, payload: dict[Any, Any]) -> None:
        for key in ("Error Message", "Information", "Note"):
            if key in payload:
                # Classify the redacted text: the echoed key could contain any marker word.
                text = self.scrub(str(payload[key]))
                if key == "Error Message":
                    raise self._error_message(text.casefold(), self.snippet(text))
                raise self._information(key, text.casefold(), self.snippet(text))

    def _error_message(self, lowered: str, detail: str) -> AlphaVantageError:
        symbol = self.symbol
        if "apikey" in lowered or "api key" in lowered:
            return BadApiKey(f"AlphaVantage rejected the API key: {detail}", symbol=symbol)
        if "function" in lowered and "does not exist" in lowered:
            return UnsupportedFunction(
                f"AlphaVantage does not know the requested function: {detail}", symbol=symbol
            )
        return InvalidSymbol(
            f"AlphaVantage does not serve symbol {symbol!r}: {detail}", symbol=symbol
        )

    def _information(self, key: str, lowered: str, detail: str) -> AlphaVantageError:
        symbol = self.symbol
        if _DEMO_KEY.search(lowered):
            return DemoKeyRejected(
                f"AlphaVantage accepts the demo key only for its demo requests, "
                f"not for {symbol!r}; configure a real key: {detail}",
                symbol=symbol,
            )
        if _BURST.search(lowered):
            return BurstLimited(f"AlphaVantage per-second limit reached: {detail}", symbol=symbol)
        if _PLAN_LIMIT.search(lowered):
            return PlanRateLimited(
                f"AlphaVantage premium plan per-minute limit reached: {detail}", symbol=symbol
            )
        if "per minute" in lowered:
            return RateLimited(f"AlphaVantage per-minute limit reached: {detail}", symbol=symbol)
        if _DAILY_LIMIT.search(lowered):
            return DailyQuotaExceeded(f"AlphaVantage daily quota is spent: {detail}", symbol=symbol)
        if "outputsize" in lowered and "premium" in lowered:
            return PremiumOutputSize(
                f"outputsize=full needs a premium AlphaVantage plan ({symbol!r}); "
                f"use compact: {detail}",
                symbol=symbol,
            )
        if _ENTITLEMENT.search(lowered):
            return PremiumEndpoint(
                f"TIME_SERIES_DAILY needs a premium AlphaVantage plan: {detail}", symbol=symbol
            )
        return RateLimited(
            f"AlphaVantage sent an unrecognised {key!r} message for {symbol!r} "
            f"(treated as a rate limit): {detail}",
            symbol=symbol,
        )

    def _series(self, payload: dict[Any, Any]) -> DailySeries:
        meta = payload.get(_META_KEY)
        if not isinstance(meta, dict):
            raise BadResponse(
                f"AlphaVantage answered {self.symbol!r} without a {_META_KEY!r} object",
                symbol=self.symbol,
            )
        reported = meta.get("2. Symbol")
        last_refreshed = meta.get("3. Last Refreshed")
        if not isinstance(reported, str) or not isinstance(last_refreshed, str):
            raise BadResponse(
                f"AlphaVantage answered {self.symbol!r} without '2. Symbol' or "
                "'3. Last Refreshed' in its Meta Data",
                symbol=self.symbol,
            )
        if reported.strip().casefold() != self.symbol.strip().casefold():
            raise SymbolMismatch(
                f"AlphaVantage answered a request for {self.symbol!r} with data for "
                f"{self.snippet(reported)!r}",
                symbol=self.symbol,
            )
        output_size = self._output_size(meta.get("4. Output Size"))
        series = payload[_SERIES_KEY]
        if not isinstance(series, dict) or not series:
            raise BadResponse(
                f"AlphaVantage answered {self.symbol!r} with an empty or invalid {_SERIES_KEY!r}",
                symbol=self.symbol,
            )
        bars = sorted((self._bar(str(day), row) for day, row in series.items()), key=_bar_date)
        return DailySeries(
            symbol=self.symbol,
            bars=tuple(bars),
            last_refreshed=self.snippet(last_refreshed),
            output_size=output_size,
        )

    def _output_size(self, value: object) -> OutputSize:
        text = value.strip().casefold() if isinstance(value, str) else ""
        # AlphaVantage reports "Compact" and "Full size".
        for size in OutputSize:
            if text.startswith(size):
                return size
        raise BadResponse(
            f"AlphaVantage answered {self.symbol!r} with an unknown '4. Output Size' "
            f"{self.snippet(repr(value))}",
            symbol=self.symbol,
        )

    def _bar(self, day: str, row: object) -> DailyBar:
        if not _DATE.fullmatch(day):
            raise self._malformed(day, "the date is not YYYY-MM-DD")
        try:
            date = dt.date.fromisoformat(day)
        except ValueError:
            raise self._malformed(day, "the date does not exist") from None
        if not isinstance(row, dict):
            raise self._malformed(day, f"the row is a JSON {type(row).__name__}, not an object")
        missing = [field for field in _FIELDS if field not in row]
        if missing:
            raise self._malformed(day, f"missing {', '.join(missing)}")
        open_, high, low, close = (self._price(day, field, row[field]) for field in _FIELDS[:4])
        volume = self._volume(day, row[_FIELDS[4]])
        if high < low:
            raise self._malformed(day, f"high {high} is below low {low}")
        return DailyBar(date=date, open=open_, high=high, low=low, close=close, volume=volume)

    def _price(self, day: str, field: str, value: object) -> Decimal:
        if isinstance(value, str) and _PRICE.fullmatch(value):
            return Decimal(value)
        raise self._malformed(day, f"{field} {self._show(value)} {_why_not_plain(value)}")

    def _volume(self, day: str, value: object) -> int:
        if isinstance(value, str) and _INTEGER.fullmatch(value):
            volume = int(value)
            if volume <= _MAX_VOLUME:
                return volume
            raise self._malformed(day, f"5. volume {self._show(value)} is too large")
        problem = _why_not_plain(value)
        if problem == "is not a plain decimal":
            problem = "is not a whole number"
        raise self._malformed(day, f"5. volume {self._show(value)} {problem}")

    def _show(self, value: object) -> str:
        return self.snippet(repr(value))[:40]

    def _malformed(self, day: str, problem: str) -> MalformedRow:
        day = self.snippet(day)[:40]
        return MalformedRow(
            self.scrub(f"Malformed TIME_SERIES_DAILY row for {self.symbol} on {day}: {problem}"),
            symbol=self.symbol,
            date=day,
        )


def _bar_date(bar: DailyBar) -> dt.date:
    return bar.date


def _why_not_plain(value: object) -> str:
    """Why `value` is not a plain non-negative decimal string, for error messages."""
    if not isinstance(value, str):
        return f"is a JSON {type(value).__name__}, not a string"
    try:
        number = Decimal(value)
    except InvalidOperation:
        return "is not a number"
    if not number.is_finite():
        return "is not finite"
    if number < 0:
        return "is negative"
    return "is not a plain decimal"
