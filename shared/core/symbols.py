"""What a ticker symbol may look like, in one place for the API, the CLI and the workers."""

from __future__ import annotations

import re

from shared.core.models import SYMBOL_MAX_LENGTH

SYMBOL_PATTERN = rf"^[A-Za-z0-9.\-]{{1,{SYMBOL_MAX_LENGTH}}}$"
SYMBOL_RULE = f"1-{SYMBOL_MAX_LENGTH} characters of letters, digits, '.' or '-'"
_SYMBOL_RE = re.compile(SYMBOL_PATTERN)


def normalize_symbol(raw: str) -> str:
    """The upper-case symbol, or ValueError when it breaks the rule."""
    if not _SYMBOL_RE.fullmatch(raw):
        raise ValueError(f"must be {SYMBOL_RULE}")
    return raw.upper()
