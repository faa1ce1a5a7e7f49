"""Exact sliding-window call limits per apikey, as the sandbox enforces them.

The ``1/second,25/day`` syntax (also ``N/Kunit``, e.g. ``3/5second``) is the one
``shared.rate_windows`` reads; it is parsed here again so that the sandbox process does not import
the Redis client just to start (startup time matters: tests start sandboxes often).
"""

import re
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

_UNIT_SECONDS = {
    **dict.fromkeys(("second", "seconds", "sec", "s"), 1),
    **dict.fromkeys(("minute", "minutes", "min", "m"), 60),
    **dict.fromkeys(("hour", "hours", "h"), 3600),
    **dict.fromkeys(("day", "days", "d"), 86_400),
}
_WINDOW = re.compile(r"\s*(\d+)\s*/\s*(\d*)\s*([a-zA-Z]+)\s*")


@dataclass(frozen=True)
class Window:
    """At most ``limit`` served calls in any interval of ``seconds`` seconds."""

    limit: int
    seconds: int


def parse_limits(text: str) -> tuple[Window, ...]:
    """Parse e.g. ``1/second,25/day`` or ``3/5second`` into windows."""
    return tuple(_parse_window(part) for part in text.split(","))


def _parse_window(part: str) -> Window:
    match = _WINDOW.fullmatch(part)
    unit = match.group(3).lower() if match else ""
    if match is None or unit not in _UNIT_SECONDS:
        raise ValueError(f"invalid limit {part.strip()!r}: expected e.g. 1/second or 25/day")
    limit, count = int(match.group(1)), int(match.group(2) or 1)
    if limit < 1 or count < 1:
        raise ValueError(f"invalid limit {part.strip()!r}: numbers must be at least 1")
    return Window(limit=limit, seconds=count * _UNIT_SECONDS[unit])


class ServedCallLimiter:
    """Counts served calls per apikey against every window; not thread-safe by itself."""

    def __init__(self, windows: Sequence[Window]) -> None:
        # Longest first, so a call blocked by several windows reports the most lasting one.
        self._windows = tuple(sorted(windows, key=lambda w: w.seconds, reverse=True))
        self._served: dict[str, tuple[deque[float], ...]] = {}

    def acquire(self, key: str, now: float) -> Window | None:
        """Count one call at ``now`` and return None, or return the full window without counting."""
        logs = self._served.get(key)
        if logs is None:
            logs = tuple(deque(maxlen=w.limit) for w in self._windows)
            self._served[key] = logs
        # Each log keeps only the last `limit` times: the window is full exactly when it holds
        # `limit` entries and the oldest of them is still inside the interval.
        for window, log in zip(self._windows, logs, strict=True):
            if len(log) == window.limit and log[0] > now - window.seconds:
                return window
        for log in logs:
            log.append(now)
        return None
