"""The AlphaVantage exceptions: pickling (the prefork pool's transport) and redaction."""

from __future__ import annotations

import pickle

from shared.upstream.errors import (
    AlphaVantageError,
    DailyQuotaExceeded,
    MalformedRow,
    RateLimited,
    UpstreamHTTPError,
    UpstreamUnavailable,
)

KEY = "SECRETKEY-TEST-1234"


def test_errors_survive_pickling() -> None:
    errors: list[AlphaVantageError] = [
        UpstreamHTTPError("HTTP 503", status_code=503, symbol="IBM"),
        MalformedRow("bad row", symbol="IBM", date="2024-06-18"),
        RateLimited("slow down", retry_after=7.5),
        DailyQuotaExceeded("tomorrow"),
    ]

    copies = [pickle.loads(pickle.dumps(error)) for error in errors]

    assert [type(c) for c in copies] == [type(e) for e in errors]
    assert [vars(c) for c in copies] == [vars(e) for e in errors]
    assert [str(c) for c in copies] == [str(e) for e in errors]


def test_error_message_redacts_apikey_query_value() -> None:
    error = UpstreamUnavailable(f"failed GET https://example.test/query?apikey={KEY}&symbol=IBM")

    assert KEY not in str(error)
    assert "apikey=***&symbol=IBM" in str(error)
