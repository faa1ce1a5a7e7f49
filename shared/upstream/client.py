"""The AlphaVantage HTTP client: fetch TIME_SERIES_DAILY and turn every failure into an error.

Transport exceptions are not chained: httpx keeps the request, whose URL holds the key, on its
exceptions.
"""

from __future__ import annotations

import json
import logging
import time
from types import TracebackType

import httpx
from pydantic import SecretStr

from shared.core.models import OutputSize
from shared.core.redaction import RedactingFilter, redact
from shared.upstream.errors import (
    AlphaVantageError,
    BadResponse,
    UpstreamHTTPError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from shared.upstream.parser import SNIPPET_CHARS, Answer, DailySeries

logger = logging.getLogger(__name__)

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

    def fetch_daily(self, symbol: str, outputsize: OutputSize = OutputSize.COMPACT) -> DailySeries:
        """Fetch and parse the daily series of `symbol`, or raise an AlphaVantageError."""
        if outputsize not in OutputSize.__members__.values():
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
        detail = self._scrub(f"{type(exc).__name__}: {exc}")[:SNIPPET_CHARS]
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
        answer = Answer(symbol, self._scrub)
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


def _not_json_message(answer: Answer, response: httpx.Response, body: bytes) -> str:
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
