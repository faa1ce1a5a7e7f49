"""AlphaVantage client: fetch TIME_SERIES_DAILY, classify every answer, parse exact prices.

AlphaVantage answers most errors with HTTP 200 and a JSON body keyed by `Error Message`,
`Information` or `Note`, and its wording changes every year or two. Answers are therefore
classified by key plus short case-insensitive substrings, never whole sentences, and throttle
markers are checked before entitlement markers because throttle messages also advertise premium.

Exceptions (``code`` is the job error code of CONTRACT.md)::

    AlphaVantageError
    ├── InvalidSymbol             invalid_symbol    permanent
    ├── BadApiKey                 bad_api_key       permanent
    │   └── DemoKeyRejected
    ├── PremiumRequired           premium_required  permanent
    │   ├── PremiumEndpoint
    │   └── PremiumOutputSize     (ask again with outputsize=compact)
    ├── RateLimited               rate_limited      retryable, retry_after 60 s
    │   ├── BurstLimited          (retry_after 2 s)
    │   ├── DailyQuotaExceeded    (retry_after None: wait until the daily window frees)
    │   └── PlanRateLimited       (premium per-minute limit, retry_after 60 s)
    ├── UpstreamError             upstream_error    retryable
    │   ├── UpstreamHTTPError     (status_code)
    │   ├── UpstreamTimeout
    │   └── UpstreamUnavailable   (connection refused, reset or closed)
    └── BadResponse               bad_response      retryable ({}, non-JSON, unknown shape)
        ├── UnsupportedFunction   permanent
        ├── SymbolMismatch        permanent
        └── MalformedRow          permanent

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
in it is cut to 200 characters. Transport exceptions are not chained: httpx keeps the request,
whose URL holds the key, on its exceptions.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, ClassVar, Literal

import httpx
from pydantic import SecretStr

from shared.redaction import RedactingFilter, redact

__all__ = [
    "AlphaVantageClient",
    "AlphaVantageError",
    "BadApiKey",
    "BadResponse",
    "BurstLimited",
    "DailyBar",
    "DailyQuotaExceeded",
    "DailySeries",
    "DemoKeyRejected",
    "InvalidSymbol",
    "MalformedRow",
    "OutputSize",
    "PlanRateLimited",
    "PremiumEndpoint",
    "PremiumOutputSize",
    "PremiumRequired",
    "RateLimited",
    "SymbolMismatch",
    "UnsupportedFunction",
    "UpstreamError",
    "UpstreamHTTPError",
    "UpstreamTimeout",
    "UpstreamUnavailable",
    "parse_daily_payload",
]

logger = logging.getLogger(__name__)

OutputSize = Literal["compact", "full"]

_SNIPPET_CHARS = 200


# --- Exceptions -------------------------------------------------------------------------------


class AlphaVantageError(Exception):
    """Base of every AlphaVantage failure; the message is already redacted."""

    code: ClassVar[str] = "upstream_error"
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, symbol: str | None = None) -> None:
        self.message = redact(message)
        self.symbol = symbol
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Celery moves exceptions between processes by pickle, which would call cls(*args) and
        # miss the keyword-only arguments of the subclasses.
        return (_restore_error, (type(self), dict(self.__dict__)))


def _restore_error(cls: type[AlphaVantageError], state: dict[str, Any]) -> AlphaVantageError:
    error = cls.__new__(cls)
    Exception.__init__(error, state["message"])
    error.__dict__.update(state)
    return error


class InvalidSymbol(AlphaVantageError):
    """AlphaVantage does not serve this symbol (unknown, delisted or unsupported)."""

    code = "invalid_symbol"
    retryable = False


class BadApiKey(AlphaVantageError):
    """The API key is missing or rejected."""

    code = "bad_api_key"
    retryable = False


class DemoKeyRejected(BadApiKey):
    """The public `demo` key was used for something other than the documented demo requests."""


class PremiumRequired(AlphaVantageError):
    """The request needs a premium AlphaVantage plan."""

    code = "premium_required"
    retryable = False


class PremiumEndpoint(PremiumRequired):
    """The function itself is premium-only."""


class PremiumOutputSize(PremiumRequired):
    """`outputsize=full` is premium-only; the same request with `compact` is allowed."""


class RateLimited(AlphaVantageError):
    """AlphaVantage throttled the key; `retry_after` is a suggested wait in seconds, if known."""

    code = "rate_limited"
    retryable = True
    retry_after: float | None = 60.0

    def __init__(
        self, message: str, *, symbol: str | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, symbol=symbol)
        if retry_after is not None:
            self.retry_after = retry_after


class BurstLimited(RateLimited):
    """The free key's per-second burst limit."""

    retry_after = 2.0


class DailyQuotaExceeded(RateLimited):
    """The free key's daily quota is spent; when it resets is not documented."""

    retry_after = None


class PlanRateLimited(RateLimited):
    """A premium key's per-minute plan limit."""

    retry_after = 60.0


class UpstreamError(AlphaVantageError):
    """AlphaVantage could not be reached or answered with a transport-level failure."""

    code = "upstream_error"
    retryable = True


class UpstreamHTTPError(UpstreamError):
    """AlphaVantage answered with an HTTP status other than 200."""

    def __init__(self, message: str, *, status_code: int, symbol: str | None = None) -> None:
        super().__init__(message, symbol=symbol)
        self.status_code = status_code


class UpstreamTimeout(UpstreamError):
    """The call took longer than the configured timeout (as a whole, or in one read)."""


class UpstreamUnavailable(UpstreamError):
    """The connection failed: refused, reset, or closed before a response."""


class BadResponse(AlphaVantageError):
    """The answer is not a usable TIME_SERIES_DAILY payload."""

    code = "bad_response"
    retryable = True


class UnsupportedFunction(BadResponse):
    """AlphaVantage says the requested function does not exist."""

    retryable = False


class SymbolMismatch(BadResponse):
    """The payload is for a different symbol than the one requested."""

    retryable = False


class MalformedRow(BadResponse):
    """One row of the series is invalid, so the whole payload is rejected."""

    retryable = False

    def __init__(self, message: str, *, symbol: str, date: str) -> None:
        super().__init__(message, symbol=symbol)
        self.date = date


# --- Parsed data ------------------------------------------------------------------------------


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
    output_size: str


# --- Classification and parsing ---------------------------------------------------------------

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
    return _Answer(symbol, redact).parse(payload)


@dataclass(frozen=True, slots=True)
class _Answer:
    """One answer for one symbol, with the redaction to apply to anything quoted from it."""

    symbol: str
    scrub: Scrub

    def snippet(self, text: str) -> str:
        text = self.scrub(text)
        return text if len(text) <= _SNIPPET_CHARS else text[:_SNIPPET_CHARS] + "…"

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

    def _output_size(self, value: object) -> str:
        text = value.strip().casefold() if isinstance(value, str) else ""
        # AlphaVantage reports "Compact" and "Full size".
        for size in ("compact", "full"):
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


# --- Client -----------------------------------------------------------------------------------

# httpx logs every request URL, query string and key included, at INFO on its own logger.
_HTTPX_LOG_FILTER = RedactingFilter()


class AlphaVantageClient:
    """Fetches TIME_SERIES_DAILY over one pooled httpx.Client; `timeout` also bounds each call."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: SecretStr | None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._url = httpx.URL(base_url)
        # Without a key the request goes out without `apikey`, and AlphaVantage answers BadApiKey.
        self._api_key = api_key if api_key is not None and api_key.get_secret_value() else None
        self._timeout = timeout
        self._http = httpx.Client(
            timeout=httpx.Timeout(connect=timeout, read=timeout, write=timeout, pool=timeout),
            transport=transport,
            follow_redirects=False,
        )
        logging.getLogger("httpx").addFilter(_HTTPX_LOG_FILTER)

    def fetch_daily(self, symbol: str, outputsize: OutputSize = "compact") -> DailySeries:
        """Fetch and parse the daily series of `symbol`, or raise an AlphaVantageError."""
        if outputsize not in ("compact", "full"):
            raise ValueError(f"outputsize must be 'compact' or 'full', not {outputsize!r}")
        if not symbol.strip():
            raise ValueError("symbol must not be empty")
        started = time.perf_counter()
        try:
            series = self._fetch(symbol, outputsize)
        except AlphaVantageError as exc:
            logger.warning(
                "AlphaVantage TIME_SERIES_DAILY symbol=%r outputsize=%s outcome=%s code=%s "
                "elapsed_ms=%d error=%s",
                symbol,
                outputsize,
                type(exc).__name__,
                exc.code,
                _elapsed_ms(started),
                exc.message,
            )
            raise
        logger.info(
            "AlphaVantage TIME_SERIES_DAILY symbol=%r outputsize=%s outcome=ok bars=%d "
            "elapsed_ms=%d",
            symbol,
            outputsize,
            len(series.bars),
            _elapsed_ms(started),
        )
        return series

    def close(self) -> None:
        """Close the pooled connections."""
        self._http.close()

    def __enter__(self) -> AlphaVantageClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _fetch(self, symbol: str, outputsize: OutputSize) -> DailySeries:
        deadline = time.monotonic() + self._timeout
        params = self._params(symbol, outputsize)
        try:
            with self._http.stream("GET", self._url, params=params) as response:
                body = self._read_body(response, deadline)
        except httpx.RequestError as exc:
            failure = self._request_failure(symbol, exc)
        else:
            return self._read(symbol, response, body)
        # Raised outside the except block so that the httpx exception, which holds the request URL
        # and so the key, is not attached as __context__.
        raise failure

    def _params(self, symbol: str, outputsize: OutputSize) -> dict[str, str]:
        params = {
            "function": "TIME_SERIES_DAILY",
            "symbol": symbol,
            "outputsize": outputsize,
            "datatype": "json",
        }
        if self._api_key is not None:
            params["apikey"] = self._api_key.get_secret_value()
        return params

    def _read_body(self, response: httpx.Response, deadline: float) -> bytes:
        """The whole body, or ReadTimeout once `deadline` passes.

        httpx's timeout bounds each read, so a body trickled in pieces would be read to the end;
        the deadline bounds the call (a read that stalls past it still ends at the read timeout).
        """
        chunks: list[bytes] = []
        for chunk in response.iter_bytes():
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(
                    f"the body was still arriving after {self._timeout:g} s",
                    request=response.request,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def _scrub(self, text: str) -> str:
        return redact(text, () if self._api_key is None else (self._api_key,))

    def _request_failure(self, symbol: str, exc: httpx.RequestError) -> AlphaVantageError:
        detail = self._scrub(f"{type(exc).__name__}: {exc}")[:_SNIPPET_CHARS]
        if isinstance(exc, httpx.TimeoutException):
            return UpstreamTimeout(
                f"AlphaVantage did not answer {symbol!r} within {self._timeout:g} s ({detail})",
                symbol=symbol,
            )
        if isinstance(exc, httpx.DecodingError):
            return BadResponse(
                f"AlphaVantage's answer for {symbol!r} could not be decoded ({detail})",
                symbol=symbol,
            )
        return UpstreamUnavailable(
            f"AlphaVantage could not be reached for {symbol!r} ({detail})", symbol=symbol
        )

    def _read(self, symbol: str, response: httpx.Response, body: bytes) -> DailySeries:
        answer = _Answer(symbol, self._scrub)
        if response.status_code != 200:
            raise UpstreamHTTPError(
                f"AlphaVantage answered {symbol!r} with HTTP {response.status_code}: "
                f"{answer.snippet(body.decode('utf-8', 'replace'))}",
                status_code=response.status_code,
                symbol=symbol,
            )
        payload = _decode_json(body)
        if payload is _NOT_JSON:
            raise BadResponse(_not_json_message(answer, response, body), symbol=symbol)
        return answer.parse(payload)


_NOT_JSON = object()


def _decode_json(body: bytes) -> object:
    # Returns a sentinel instead of raising: a JSONDecodeError keeps the whole body (which may echo
    # the key) and would become the __context__ of the BadResponse.
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _not_json_message(answer: _Answer, response: httpx.Response, body: bytes) -> str:
    text = answer.snippet(body.decode("utf-8", "replace"))
    if not body.strip():
        return f"AlphaVantage answered {answer.symbol!r} with an empty body"
    if body.lstrip()[:1] in (b"{", b"["):
        return f"AlphaVantage answered {answer.symbol!r} with truncated or invalid JSON: {text}"
    content_type = answer.snippet(response.headers.get("content-type", "none"))
    return (
        f"AlphaVantage answered {answer.symbol!r} with a non-JSON body "
        f"(content-type {content_type}): {text}"
    )


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
