"""Fleet-wide AlphaVantage rate limiter: sliding-log windows in Redis, checked by one Lua script.

Why a sliding log (one ZSET member per call) rather than GCRA or a sliding-window counter: a GCRA
bucket per window cannot be checked for several windows at once without consuming from each, and
a sliding-window counter is an approximation that can exceed a limit inside some interval. The
log is exact (a grant happens only if fewer than N calls lie in the last window length, so no
interval of that length ever holds more than N) and costs a few thousand members at most here.

Every operation runs as one Lua script timed by ``redis.call('TIME')``, so every worker on every
machine uses Redis' clock and sees one consistent budget. Scores are integer microseconds.

A call takes two steps: ``acquire`` grants a token stamped with the grant's time, and ``confirm``
restamps it with the moment the call is sent. The upstream counts a call when it arrives, so a
caller that stalls between the grant and the send (a database write on a saturated machine)
would otherwise make the upstream see calls closer together than the log says.

Redis may lose its data (restart without persistence). Each window therefore has an
``…:initialized`` marker; an operation that finds a marker missing refuses to run, the limiter
re-seeds the window from the caller's audit log of past calls (``history``), and only then retries.
The seeding script checks the markers itself, so concurrent rebuilds never double-count.

Keys under ``key_prefix``: ``:w:<seconds>`` (log ZSET, TTL = window length), ``:w:<seconds>:
initialized`` (marker, no TTL: its absence is the signal that data was lost), ``:cooldown`` (hash
with ``until_us`` and ``reason``, TTL = the cooldown) and ``:seq`` (makes log members unique).
Every key goes through KEYS, so a hash-tagged prefix such as ``{stockpile:ratelimit}`` also works
on Redis Cluster. Needs Redis >= 5 (effect replication of scripts that call TIME).

The scripts live beside this module (``*.lua``, shipped as package data); each is prefixed with
``common.lua``, the helpers they share.
"""

import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from shared.core.rate_windows import RateWindow

logger = logging.getLogger(__name__)

_MICROS = 1_000_000
# Audit timestamps a little older than the longest window are still sent to the seeding script,
# which decides membership with Redis' own clock; the margin only absorbs the round trip.
_REBUILD_MARGIN_SECONDS = 60.0
# A run that finds its state missing re-seeds and tries again; losing the state again and again
# means Redis keeps being wiped, which is an error, not a reason to loop.
_MAX_ATTEMPTS = 3

_NOT_INITIALIZED = -1


@dataclass(frozen=True)
class Grant:
    """Answer to one token request; ``at`` is Redis' clock (unix seconds) at the decision.

    A granted token is ``confirm``-ed right before its call is sent.
    """

    granted: bool
    retry_after: float
    at: float
    token: str | None = None


@dataclass(frozen=True)
class WindowStatus:
    """Usage of one window."""

    window: RateWindow
    used: int  # calls in the last window length (granted tokens not yet confirmed included)
    remaining: int  # tokens this window could grant now
    retry_after: float  # seconds until it frees a token, 0 when it has one
    initialized: bool  # False when Redis lost the window's state (the next grant re-seeds it)


@dataclass(frozen=True)
class LimiterStatus:
    """Snapshot of every window and of the fleet-wide cooldown."""

    windows: tuple[WindowStatus, ...]
    cooldown_remaining: float
    cooldown_reason: str | None
    at: float  # Redis' clock (unix seconds) when the snapshot was taken

    @property
    def initialized(self) -> bool:
        """Whether every window's state is present (not lost with a Redis restart)."""
        return all(w.initialized for w in self.windows)

    @property
    def available(self) -> int:
        """Tokens grantable right now: the tightest window's remaining, 0 during a cooldown."""
        if self.cooldown_remaining > 0:
            return 0
        return min(w.remaining for w in self.windows)


def _script(name: str) -> str:
    folder = resources.files("shared.upstream")
    return (folder / "common.lua").read_text() + (folder / f"{name}.lua").read_text()


def history_needed(windows: Iterable[RateWindow]) -> float:
    """Seconds of past calls a rebuild reads: the longest window and the rebuild's margin."""
    return max(w.seconds for w in windows) + _REBUILD_MARGIN_SECONDS


_ACQUIRE_LUA = _script("acquire")
_CONFIRM_LUA = _script("confirm")
_COOLDOWN_LUA = _script("cooldown")
_EXHAUST_LUA = _script("exhaust")
_REBUILD_LUA = _script("rebuild")
_STATUS_LUA = _script("status")


class LimiterStateLostError(RuntimeError):
    """Redis kept losing the limiter's state while it was being re-seeded."""


class LimiterUnreachableError(RuntimeError):
    """The Redis that holds the fleet's budget did not answer (down, restarting): no token.

    If the script ran and only its answer was lost, the windows count a call that is never
    made: the fleet spends less than it may, never more.
    """


@contextmanager
def redis_must_answer() -> Iterator[None]:
    """Turn Redis' connection errors and timeouts into LimiterUnreachableError."""
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError):
        raise  # a fault to fix (wrong password or ACL), not an outage to wait out: loud
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise LimiterUnreachableError(f"Redis did not answer ({type(exc).__name__})") from exc


class RedisRateLimiter:
    """Fleet-wide limiter enforcing every window at once, with cooldowns, in one Redis."""

    def __init__(
        self,
        redis_client: "redis.Redis[Any]",
        windows: Sequence[RateWindow],
        *,
        history: Callable[[], Iterable[float]],
        key_prefix: str = "stockpile:ratelimit",
        margin_seconds: float = 0.0,
    ) -> None:
        """Limit through ``redis_client``; ``history`` returns unix times of recent calls.

        ``margin_seconds`` lengthens every window a little: the upstream counts a call when it
        arrives, and two calls granted exactly one window apart may arrive closer than that.
        """
        # ``history`` is required on purpose: ``lambda: ()`` fits only where no audit log exists,
        # because after Redis loses its data the windows then restart empty and may overshoot.
        if not windows:
            raise ValueError("a rate limiter needs at least one window")
        lengths = [w.seconds for w in windows]
        if len(set(lengths)) != len(lengths):
            raise ValueError("rate windows must have distinct lengths")
        if not 0 <= margin_seconds < 1:
            raise ValueError(f"margin must be in [0, 1) seconds, got {margin_seconds!r}")
        self._windows = tuple(windows)
        self._window_us = tuple(round((w.seconds + margin_seconds) * _MICROS) for w in windows)
        self._history = history
        self._cooldown_key = f"{key_prefix}:cooldown"
        self._seq_key = f"{key_prefix}:seq"
        # The key holds the window length but not the limit, so a changed limit keeps the log.
        self._log_keys = tuple(f"{key_prefix}:w:{w.seconds}" for w in self._windows)
        self._marker_keys = tuple(f"{k}:initialized" for k in self._log_keys)
        self._redis = redis_client
        self._acquire = redis_client.register_script(_ACQUIRE_LUA)
        self._confirm = redis_client.register_script(_CONFIRM_LUA)
        self._cooldown = redis_client.register_script(_COOLDOWN_LUA)
        self._exhaust = redis_client.register_script(_EXHAUST_LUA)
        self._rebuild = redis_client.register_script(_REBUILD_LUA)
        self._status = redis_client.register_script(_STATUS_LUA)

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        """The enforced windows, in configuration order."""
        return self._windows

    def acquire(self, *, cost_id: str | None = None) -> Grant:
        """Take one token from every window atomically, or say how long until all have one.

        Raises LimiterUnreachableError when Redis does not answer.
        """
        keys = [self._cooldown_key, self._seq_key]
        args: list[str | int] = [cost_id or ""]
        for log_key, marker_key, window, window_us in zip(
            self._log_keys, self._marker_keys, self._windows, self._window_us, strict=True
        ):
            keys += [log_key, marker_key]
            args += [window.limit, window_us]
        with redis_must_answer():
            for _ in range(_MAX_ATTEMPTS):
                code, wait_us, now_us, *member = self._acquire(keys=keys, args=args)
                if code != _NOT_INITIALIZED:
                    return Grant(
                        granted=code == 1,
                        retry_after=wait_us / _MICROS,
                        at=now_us / _MICROS,
                        token=_text(member[0]) if member else None,
                    )
                self.ensure_initialized()
        raise LimiterStateLostError("rate limiter state disappeared again after re-seeding")

    def confirm(self, grant: Grant) -> float | None:
        """Stamp a granted token with now, right before its call is sent; return that time.

        The windows then count the call where the upstream sees it, not where it was granted
        (work between the two, such as a database write, can stall on a busy machine). None: the
        token lapsed (the caller stalled longer than a window and another call may hold its
        place, or Redis lost it), so the call must not be made. Raises LimiterUnreachableError
        when Redis does not answer: then too the call must not be made.
        """
        if grant.token is None:
            raise ValueError("only a granted token can be confirmed")
        with redis_must_answer():
            confirmed, now_us = self._confirm(
                keys=self._log_keys, args=[grant.token, *self._window_us]
            )
        return now_us / _MICROS if confirmed == 1 else None

    def cooldown(self, seconds: float, reason: str) -> None:
        """Pause the whole fleet for ``seconds``; a longer cooldown already set is kept."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"cooldown must be a positive number of seconds, got {seconds!r}")
        remaining_us = self._cooldown(
            keys=[self._cooldown_key], args=[math.ceil(seconds * _MICROS), reason]
        )
        logger.warning(
            "rate limiter cooldown for %.1f s (asked %.1f s): %s",
            remaining_us / _MICROS,
            seconds,
            reason,
        )

    def exhaust(self, window: RateWindow, reason: str) -> float:
        """Mark ``window`` as used up (upstream said so); return seconds until it frees a token."""
        try:
            index = self._windows.index(window)
        except ValueError:
            raise ValueError(f"{window.label} is not one of this limiter's windows") from None
        keys = [self._log_keys[index], self._marker_keys[index]]
        args = [window.limit, self._window_us[index]]
        for _ in range(_MAX_ATTEMPTS):
            wait_us, _now_us = self._exhaust(keys=keys, args=args)
            if wait_us != _NOT_INITIALIZED:
                wait = float(wait_us) / _MICROS
                logger.warning(
                    "rate window %s marked exhausted, frees in %.0f s: %s",
                    window.label,
                    wait,
                    reason,
                )
                return wait
            self.ensure_initialized()
        raise LimiterStateLostError("rate limiter state disappeared again after re-seeding")

    def status(self) -> LimiterStatus:
        """Read every window's usage and the cooldown without changing anything."""
        keys = [self._cooldown_key]
        args: list[int] = []
        for log_key, marker_key, window, window_us in zip(
            self._log_keys, self._marker_keys, self._windows, self._window_us, strict=True
        ):
            keys += [log_key, marker_key]
            args += [window.limit, window_us]
        raw = self._status(keys=keys, args=args)
        now_us, cooldown_us, reason = raw[0], raw[1], _text(raw[2])
        statuses = []
        for i, window in enumerate(self._windows):
            used, wait_us, marker = raw[3 + 3 * i : 6 + 3 * i]
            statuses.append(
                WindowStatus(
                    window=window,
                    used=int(used),
                    remaining=max(0, window.limit - int(used)),
                    retry_after=wait_us / _MICROS,
                    initialized=bool(marker),
                )
            )
        return LimiterStatus(
            windows=tuple(statuses),
            cooldown_remaining=cooldown_us / _MICROS,
            cooldown_reason=reason if cooldown_us > 0 and reason else None,
            at=now_us / _MICROS,
        )

    def is_initialized(self) -> bool:
        """Whether every window's state is present in Redis."""
        return int(self._redis.exists(*self._marker_keys)) == len(self._marker_keys)

    def ensure_initialized(self) -> bool:
        """Re-seed windows whose state is missing from ``history``; return whether any was."""
        if self.is_initialized():
            return False
        return self.rebuild(self._history())

    def rebuild(self, call_times: Iterable[float]) -> bool:
        """Seed windows whose state is missing from unix times of past calls; others untouched."""
        server_seconds, server_micros = self._redis.time()
        oldest = server_seconds + server_micros / _MICROS - self._longest_seconds()
        stamps: list[int] = []
        for ts in call_times:
            if not math.isfinite(ts):
                raise ValueError(f"call time must be a finite unix timestamp, got {ts!r}")
            if ts > oldest - _REBUILD_MARGIN_SECONDS:
                stamps.append(math.floor(ts * _MICROS))
        stamps.sort()
        keys: list[str] = []
        for log_key, marker_key in zip(self._log_keys, self._marker_keys, strict=True):
            keys += [log_key, marker_key]
        args = [len(self._windows), *self._window_us, *stamps]
        seeded = int(self._rebuild(keys=keys, args=args))
        if seeded:
            logger.warning(
                "rate limiter state was missing: seeded %d window(s) from %d recent call(s)",
                seeded,
                len(stamps),
            )
        return seeded > 0

    def _longest_seconds(self) -> int:
        return max(w.seconds for w in self._windows)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
