"""The rate-window type and its configuration syntax (`ALPHAVANTAGE_RATE_LIMITS`)."""

import re
from dataclasses import dataclass

_UNIT_SECONDS: dict[str, int] = {
    "second": 1,
    "seconds": 1,
    "sec": 1,
    "s": 1,
    "minute": 60,
    "minutes": 60,
    "min": 60,
    "m": 60,
    "hour": 3600,
    "hours": 3600,
    "h": 3600,
    "day": 86400,
    "days": 86400,
    "d": 86400,
}
# Largest unit first, so labels prefer "25/day" over "25/86400second".
_LABEL_UNITS: tuple[tuple[str, int], ...] = (
    ("day", 86400),
    ("hour", 3600),
    ("minute", 60),
    ("second", 1),
)
_WINDOW_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class RateWindow:
    """At most ``limit`` calls in any sliding interval of ``seconds`` seconds."""

    limit: int
    seconds: int

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"rate window limit must be at least 1, got {self.limit}")
        if self.seconds < 1:
            raise ValueError(f"rate window length must be at least 1 second, got {self.seconds}")

    @property
    def label(self) -> str:
        """Human and metric label such as ``25/day`` or ``8/2second``."""
        for unit, unit_seconds in _LABEL_UNITS:
            if self.seconds % unit_seconds == 0:
                count = self.seconds // unit_seconds
                return f"{self.limit}/{unit}" if count == 1 else f"{self.limit}/{count}{unit}"
        raise AssertionError("unreachable: every length is a multiple of one second")


def parse_rate_limits(text: str) -> tuple[RateWindow, ...]:
    """Parse ``1/second,25/day`` (units second/minute/hour/day, or ``N/Kunit``) into windows."""
    if not text.strip():
        raise ValueError("rate limits must not be empty; expected e.g. '1/second,25/day'")
    windows: list[RateWindow] = []
    for part in text.split(","):
        windows.append(_parse_window(part, text))
    lengths = [w.seconds for w in windows]
    duplicates = sorted({s for s in lengths if lengths.count(s) > 1})
    if duplicates:
        labels = ", ".join(w.label for w in windows if w.seconds in duplicates)
        raise ValueError(f"rate limits {text!r} give the same window length twice: {labels}")
    return tuple(windows)


def _parse_window(part: str, text: str) -> RateWindow:
    match = _WINDOW_RE.match(part)
    unit = match.group(3).lower() if match else ""
    if match is None or unit not in _UNIT_SECONDS:
        raise ValueError(
            f"invalid rate limit {part.strip()!r} in {text!r}: expected N/second, N/minute, "
            "N/hour or N/day"
        )
    limit = int(match.group(1))
    count = int(match.group(2)) if match.group(2) else 1
    if limit < 1 or count < 1:
        raise ValueError(f"invalid rate limit {part.strip()!r} in {text!r}: numbers must be >= 1")
    return RateWindow(limit=limit, seconds=count * _UNIT_SECONDS[unit])
