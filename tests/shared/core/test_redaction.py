"""redact() and RedactingFilter: secrets never survive into text or log output."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from shared.core.redaction import REDACTED, RedactingFilter, redact

KEY = "SECRETKEY-TEST-1234"


# --- redact() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"GET https://www.alphavantage.co/query?function=X&apikey={KEY}&symbol=IBM",
            "GET https://www.alphavantage.co/query?function=X&apikey=***&symbol=IBM",
        ),
        (f"url='https://h/q?APIKEY={KEY}'", "url='https://h/q?APIKEY=***'"),
        (f"https://h/q?api_key={KEY}#frag", "https://h/q?api_key=***#frag"),
        (f"next=%2Fq%3Fapikey%3D{KEY}", "next=%2Fq%3Fapikey%3D***"),
        (f"{{'apikey': '{KEY}', 'symbol': 'IBM'}}", "{'apikey': '***', 'symbol': 'IBM'}"),
        (f'{{"apikey": "{KEY}"}}', '{"apikey": "***"}'),
        (f"[('symbol', 'IBM'), ('apikey', '{KEY}')]", "[('symbol', 'IBM'), ('apikey', '***')]"),
        (
            f"We have detected your API key as {KEY} and our standard API rate limit is 25",
            "We have detected your API key as *** and our standard API rate limit is 25",
        ),
        ("detected your api key as  ABCDEF123, sorry", "detected your api key as  *** sorry"),
    ],
)
def test_redact_masks_key_patterns_without_knowing_the_key(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_masks_given_secret_anywhere() -> None:
    text = f"key={KEY}; echoed {KEY}!{KEY}"

    assert redact(text, [KEY]) == "key=***; echoed ***!***"


def test_redact_accepts_secretstr() -> None:
    assert redact(f"token {KEY} here", [SecretStr(KEY)]) == "token *** here"


def test_redact_masks_longer_secret_whole() -> None:
    # "ABC" inside "ABCDEF" must not leave "DEF" behind.
    assert redact("x ABCDEF y ABC", ["ABC", "ABCDEF"]) == "x *** y ***"


def test_redact_leaves_clean_text_unchanged() -> None:
    text = "Invalid API call. Please retry (https://www.alphavantage.co/documentation/)."

    assert redact(text, [KEY]) == text


def test_redact_ignores_empty_secret_and_empty_value() -> None:
    text = "url?apikey=&symbol=IBM"

    assert redact(text, ["", SecretStr("")]) == text


def test_redacted_marker_is_stable() -> None:
    assert REDACTED == "***"


# --- RedactingFilter --------------------------------------------------------------------------


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A private logger whose handler carries the filter, and the text that handler wrote."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    handler.addFilter(RedactingFilter([KEY]))
    parent = logging.getLogger("test_redaction")
    parent.propagate = False
    parent.setLevel(logging.DEBUG)
    parent.addHandler(handler)
    try:
        # Records are created on a child logger, so the filter is seen working on propagated
        # records, as it will on the root logger's handlers.
        yield logging.getLogger("test_redaction.child"), stream
    finally:
        parent.removeHandler(handler)


def test_filter_redacts_tuple_args(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured

    log.info("calling %s with %s", f"https://h/q?apikey={KEY}", KEY)

    assert stream.getvalue() == (
        "INFO test_redaction.child calling https://h/q?apikey=*** with ***\n"
    )


def test_filter_redacts_dict_args(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured

    log.warning("params=%(params)s symbol=%(symbol)s", {"params": {"apikey": KEY}, "symbol": "IBM"})

    assert stream.getvalue() == (
        "WARNING test_redaction.child params={'apikey': '***'} symbol=IBM\n"
    )


def test_filter_redacts_exception_traceback(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured

    try:
        raise RuntimeError(f"Server error for url 'https://h/q?symbol=IBM&apikey={KEY}'")
    except RuntimeError:
        log.exception("fetch failed")

    output = stream.getvalue()
    assert KEY not in output
    assert "Traceback (most recent call last)" in output
    assert "RuntimeError: Server error for url 'https://h/q?symbol=IBM&apikey=***'" in output


def test_filter_redacts_stack_info() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "here", (), None)
    record.stack_info = f'Stack (most recent call last):\n  get("/q?apikey={KEY}")'

    RedactingFilter([KEY]).filter(record)

    assert record.stack_info == 'Stack (most recent call last):\n  get("/q?apikey=***")'


def test_filter_redacts_exception_object_as_message(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured

    log.error(ValueError(f"bad key {KEY}"))

    assert stream.getvalue() == "ERROR test_redaction.child bad key ***\n"


def test_filter_redacts_unformattable_record(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured

    log.info("count=%d", KEY)

    output = stream.getvalue()
    assert KEY not in output
    assert "count=%d" in output


def test_filter_keeps_every_record() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "apikey=%s", (KEY,), None)

    assert RedactingFilter([KEY]).filter(record) is True
    assert (record.getMessage(), record.args) == ("apikey=***", ())


def test_filter_without_secrets_still_masks_apikey_values() -> None:
    record = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "GET %s", (f"/q?apikey={KEY}",), None
    )

    RedactingFilter().filter(record)

    assert record.getMessage() == "GET /q?apikey=***"


def test_filter_replaces_exc_info_with_redacted_text() -> None:
    # Formatters that render exc_info themselves (JSON loggers, error trackers) would bypass
    # a redacted exc_text, so the filter leaves them only the text.
    try:
        raise RuntimeError(f"GET /q?apikey={KEY}")
    except RuntimeError as exc:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "boom", (), (type(exc), exc, None)
        )

    RedactingFilter([KEY]).filter(record)

    assert record.exc_info is None
    assert record.exc_text is not None
    assert record.exc_text.endswith("RuntimeError: GET /q?apikey=***")
