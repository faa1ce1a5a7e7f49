"""The AlphaVantage exception tree; every message is redacted when the exception is made.

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
"""

from __future__ import annotations

from typing import Any, ClassVar

from shared.core.models import JobErrorCode
from shared.core.redaction import redact


class AlphaVantageError(Exception):
    """Base of every AlphaVantage failure; the message is already redacted."""

    code: ClassVar[JobErrorCode] = JobErrorCode.UPSTREAM_ERROR
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, symbol: str | None = None) -> None:
        self.message = redact(message)
        self.symbol = symbol
        super().__init__(self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        # The prefork pool pickles an exception that escapes a task to hand it to the parent
        # process, and pickle's default would call cls(*args), missing the subclasses'
        # keyword-only arguments. Today none escapes (`shared.domain.refresh` catches every
        # AlphaVantageError around the call), so this keeps a future one from crashing the pool.
        return (_restore_error, (type(self), dict(self.__dict__)))


def _restore_error(cls: type[AlphaVantageError], state: dict[str, Any]) -> AlphaVantageError:
    error = cls.__new__(cls)
    Exception.__init__(error, state["message"])
    error.__dict__.update(state)
    return error


class InvalidSymbol(AlphaVantageError):
    """AlphaVantage does not serve this symbol (unknown, delisted or unsupported)."""

    code = JobErrorCode.INVALID_SYMBOL
    retryable = False


class BadApiKey(AlphaVantageError):
    """The API key is missing or rejected."""

    code = JobErrorCode.BAD_API_KEY
    retryable = False


class DemoKeyRejected(BadApiKey):
    """The public `demo` key was used for something other than the documented demo requests."""


class PremiumRequired(AlphaVantageError):
    """The request needs a premium AlphaVantage plan."""

    code = JobErrorCode.PREMIUM_REQUIRED
    retryable = False


class PremiumEndpoint(PremiumRequired):
    """The function itself is premium-only."""


class PremiumOutputSize(PremiumRequired):
    """`outputsize=full` is premium-only; the same request with `compact` is allowed."""


class RateLimited(AlphaVantageError):
    """AlphaVantage throttled the key; `retry_after` is a suggested wait in seconds, if known."""

    code = JobErrorCode.RATE_LIMITED
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

    code = JobErrorCode.UPSTREAM_ERROR
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

    code = JobErrorCode.BAD_RESPONSE
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
