"""Stop signals before honcho takes them over, and while the servers are being stopped."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

# SIGHUP: the terminal was closed; the children, in their own sessions, would not notice.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequested(BaseException):
    """SIGINT, SIGTERM or SIGHUP arrived while the stack was still being prepared."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise StopRequested(signum)


@contextmanager
def stop_signals_raise() -> Iterator[None]:
    # Until honcho takes over the signals, SIGTERM must unwind like Ctrl-C does, so that the
    # embedded servers started so far are stopped (the default SIGTERM action skips cleanup).
    previous = {sig: signal.signal(sig, _raise_stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def stop_signals_ignored() -> Iterator[None]:
    # Stopping the servers takes a few seconds; a second Ctrl-C must not cut it short.
    previous: dict[signal.Signals, Any] = {
        sig: signal.signal(sig, signal.SIG_IGN) for sig in _STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
