"""Keep secrets out of text and log records.

AlphaVantage takes its key only in the query string, so URLs (and the exceptions and log lines
of HTTP libraries that print them) carry it; its daily-limit message even echoes the key back.
`redact` masks `apikey=` query values, that echo, quoted `"apikey": "..."` pairs and every given
secret. `RedactingFilter` applies it to whole log records.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable

from pydantic import SecretStr

__all__ = ["REDACTED", "RedactingFilter", "redact"]

REDACTED = "***"

# `apikey=` / `api_key=` and their URL-encoded `%3D` form, as in query strings and URLs.
_QUERY_VALUE = re.compile(r"(api_?key(?:=|%3d))[^&\s'\"<>#]+", re.IGNORECASE)
# Quoted pairs as printed by dict, tuple or JSON reprs: 'apikey': 'X', ("apikey", "X").
_QUOTED_VALUE = re.compile(r"(['\"]api_?key['\"]\s*[:=,]\s*['\"])[^'\"]+", re.IGNORECASE)
# AlphaVantage's daily-limit message: "We have detected your API key as <KEY> and ...".
_ECHOED_KEY = re.compile(r"(detected your api key as\s+)\S+", re.IGNORECASE)


def _plain(secret: str | SecretStr) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def redact(text: str, secrets: Iterable[str | SecretStr] = ()) -> str:
    """Return `text` with API-key query values, echoed keys and every non-empty secret masked."""
    # Longest first, so a secret that contains another one is masked whole.
    for secret in sorted((s for s in map(_plain, secrets) if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _QUERY_VALUE.sub(rf"\g<1>{REDACTED}", text)
    text = _QUOTED_VALUE.sub(rf"\g<1>{REDACTED}", text)
    return _ECHOED_KEY.sub(rf"\g<1>{REDACTED}", text)


class RedactingFilter(logging.Filter):
    """Log filter that redacts the message, its arguments, exception and stack text of every record.

    The record is rewritten in place (message rendered and redacted, `args` emptied, traceback
    rendered into `exc_text` and `exc_info` dropped) and always let through. Attach it to handlers,
    e.g. every handler of the root logger: a filter on a logger only sees records created on that
    very logger, not those propagated from child loggers. `extra=` attributes are not redacted.
    """

    def __init__(self, secrets: Iterable[str | SecretStr] = (), name: str = "") -> None:
        super().__init__(name)
        self._secrets = tuple(s for s in map(_plain, secrets) if s)

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact `record` in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:
            # A bad format string would otherwise reach handleError, which prints the raw arguments.
            message = f"{record.msg!s} (unformattable arguments: {record.args!r})"
        record.msg = redact(message, self._secrets)
        record.args = ()
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            # Formatters that render exc_info themselves would bypass the redacted text.
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self._secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self._secrets)
        return True
