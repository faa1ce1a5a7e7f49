"""Process-wide logging: one format, and every record passes through the secret redactor."""

from __future__ import annotations

import logging
import sys

from shared.core.redaction import RedactingFilter
from shared.core.settings import Settings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_MARKER = "_stockpile_handler"


def configure_logging(settings: Settings) -> None:
    """Log to stderr at the configured level, redacting the key and token from every line."""
    root = logging.getLogger()
    for existing in [h for h in root.handlers if getattr(h, _MARKER, False)]:
        root.removeHandler(existing)  # configured again (new settings): replace, don't duplicate
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    secrets = [s for s in (settings.alphavantage_api_key, settings.api_token) if s is not None]
    handler.addFilter(RedactingFilter(secrets))
    setattr(handler, _MARKER, True)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # httpx logs every request URL at INFO, and AlphaVantage URLs carry the key.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
