"""Exact sliding-window call limits per apikey, as the sandbox enforces them.

The windows are written as the fleet's ``ALPHAVANTAGE_RATE_LIMITS`` are (``1/second,25/day``,
also ``N/Kunit`` such as ``3/5second``) and parsed by the same code, ``shared.core.rate_windows``.
"""

from collections import deque
from collections.abc import Sequence

from shared.core.rate_windows import RateWindow


class ServedCallLimiter:
    """Counts served calls per apikey against every window; not thread-safe by itself."""

    def __init__(self, windows: Sequence[RateWindow]) -> None:
        # Longest first, so a call blocked by several windows reports the most lasting one.
        self._windows = tuple(sorted(windows, key=lambda w: w.seconds, reverse=True))
        self._served: dict[str, tuple[deque[float], ...]] = {}

    def acquire(self, key: str, now: float) -> RateWindow | None:
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
