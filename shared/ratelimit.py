"""Fleet-wide AlphaVantage rate limiter: sliding-log windows in Redis, checked by one Lua script.

Why a sliding log (one ZSET member per call) rather than GCRA or a sliding-window counter: a GCRA
bucket per window cannot be checked for several windows at once without consuming from each, and
a sliding-window counter is an approximation that can exceed a limit inside some interval. The
log is exact (a grant happens only if fewer than N calls lie in the last window length, so no
interval of that length ever holds more than N) and costs a few thousand members at most here.

Every operation runs as one Lua script timed by ``redis.call('TIME')``, so every worker on every
machine uses Redis' clock and sees one consistent budget. Scores are integer microseconds.

Redis may lose its data (restart without persistence). Each window therefore has an
``…:initialized`` marker; an operation that finds a marker missing refuses to run, the limiter
re-seeds the window from the caller's audit log of past calls (``history``), and only then retries.
The seeding script checks the markers itself, so concurrent rebuilds never double-count.

Keys under ``key_prefix``: ``:w:<seconds>`` (log ZSET, TTL = window length), ``:w:<seconds>:
initialized`` (marker, no TTL: its absence is the signal that data was lost), ``:cooldown`` (hash
with ``until_us`` and ``reason``, TTL = the cooldown) and ``:seq`` (makes log members unique).
Every key goes through KEYS, so a hash-tagged prefix such as ``{stockpile:ratelimit}`` also works
on Redis Cluster. Needs Redis >= 5 (effect replication of scripts that call TIME).
"""

import logging
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

logger = logging.getLogger(__name__)

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
_MICROS = 1_000_000
# Audit timestamps a little older than the longest window are still sent to the seeding script,
# which decides membership with Redis' own clock; the margin only absorbs the round trip.
_REBUILD_MARGIN_SECONDS = 60.0
# A run that finds its state missing re-seeds and tries again; losing the state again and again
# means Redis keeps being wiped, which is an error, not a reason to loop.
_MAX_ATTEMPTS = 3

_NOT_INITIALIZED = -1


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


@dataclass(frozen=True)
class Grant:
    """Answer to one token request; ``at`` is Redis' clock (unix seconds) at the decision."""

    granted: bool
    retry_after: float
    at: float


@dataclass(frozen=True)
class WindowStatus:
    """Usage of one window: calls in the last window length and seconds until a token frees."""

    window: RateWindow
    used: int
    remaining: int
    retry_after: float
    initialized: bool


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


def history_needed(windows: Iterable[RateWindow]) -> float:
    """Seconds of past calls a rebuild reads: the longest window and the rebuild's margin."""
    return max(w.seconds for w in windows) + _REBUILD_MARGIN_SECONDS


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


# Shared Lua helpers. Numbers are integer microseconds; they are formatted with %d before being
# handed to Redis because Lua's tostring() keeps only 14 significant digits.
_LUA_COMMON = """
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

local function fmt(n)
  return string.format('%d', n)
end

-- Calls in (now - len, now] and the wait until one of them leaves so that a call fits again.
local function window_usage(key, limit, len, now)
  local used = redis.call('ZCOUNT', key, '(' .. fmt(now - len), '+inf')
  if used < limit then
    return used, 0
  end
  local blocker = redis.call('ZRANGEBYSCORE', key, '(' .. fmt(now - len), '+inf',
    'WITHSCORES', 'LIMIT', used - limit, 1)
  return used, tonumber(blocker[2]) + len - now
end

local function cooldown_wait(key, now)
  local until_us = redis.call('HGET', key, 'until_us')
  if until_us and tonumber(until_us) > now then
    return tonumber(until_us) - now
  end
  return 0
end
"""

# KEYS: cooldown, seq, then (log, marker) per window.
# ARGV: cost_id, then (limit, len_us) per window.
# Returns {1, 0, now} granted, {0, wait, now} denied, {-1, 0, now} when a window's state is lost.
_ACQUIRE_LUA = (
    _LUA_COMMON
    + """
local now = now_us()
local n = (#KEYS - 2) / 2
for i = 1, n do
  if redis.call('EXISTS', KEYS[2 + 2 * i]) == 0 then
    return {-1, 0, now}
  end
end
local wait = cooldown_wait(KEYS[1], now)
local longest = 0
for i = 1, n do
  local key = KEYS[1 + 2 * i]
  local limit = tonumber(ARGV[2 * i])
  local len = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt(now - len))
  local _, w = window_usage(key, limit, len, now)
  if w > wait then wait = w end
  if len > longest then longest = len end
end
if wait > 0 then
  return {0, wait, now}
end
local seq = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], fmt(math.ceil(longest / 1000)))
local member = fmt(now) .. ':' .. fmt(seq) .. ':' .. ARGV[1]
for i = 1, n do
  local key = KEYS[1 + 2 * i]
  redis.call('ZADD', key, fmt(now), member)
  redis.call('PEXPIRE', key, fmt(math.ceil(tonumber(ARGV[2 * i + 1]) / 1000)))
end
return {1, 0, now}
"""
)

# KEYS: cooldown. ARGV: duration_us, reason. Never shortens a longer cooldown already in place.
# Returns the remaining cooldown after the call.
_COOLDOWN_LUA = (
    _LUA_COMMON
    + """
local now = now_us()
local until_us = now + tonumber(ARGV[1])
local current = redis.call('HGET', KEYS[1], 'until_us')
if current and tonumber(current) >= until_us then
  return tonumber(current) - now
end
redis.call('HSET', KEYS[1], 'until_us', fmt(until_us), 'reason', ARGV[2])
redis.call('PEXPIRE', KEYS[1], fmt(math.ceil(tonumber(ARGV[1]) / 1000)))
return tonumber(ARGV[1])
"""
)

# KEYS: log, marker. ARGV: limit, len_us. Fills the window up to its limit with entries stamped
# now, so no call is granted until the oldest entry already there leaves the window.
# Returns {wait, now}, or {-1, now} when the window's state is lost.
_EXHAUST_LUA = (
    _LUA_COMMON
    + """
local now = now_us()
if redis.call('EXISTS', KEYS[2]) == 0 then
  return {-1, now}
end
local limit = tonumber(ARGV[1])
local len = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - len))
local used = redis.call('ZCARD', KEYS[1])
for i = used + 1, limit do
  redis.call('ZADD', KEYS[1], fmt(now), 'x:' .. fmt(now) .. ':' .. fmt(i))
end
redis.call('PEXPIRE', KEYS[1], fmt(math.ceil(len / 1000)))
local _, wait = window_usage(KEYS[1], limit, len, now)
return {wait, now}
"""
)

# KEYS: (log, marker) per window. ARGV: count of windows, len_us per window, then the audit
# timestamps in microseconds, sorted. Seeds only windows whose marker is missing, then sets it.
# Members are derived from the timestamps, so seeding the same history twice adds nothing.
# Returns how many windows were seeded.
_REBUILD_LUA = (
    _LUA_COMMON
    + """
local now = now_us()
local n = tonumber(ARGV[1])
local seeded = 0
for i = 1, n do
  local key = KEYS[2 * i - 1]
  local marker = KEYS[2 * i]
  local len = tonumber(ARGV[1 + i])
  if redis.call('EXISTS', marker) == 0 then
    local previous = nil
    local repeat_count = 0
    for j = n + 2, #ARGV do
      local ts = tonumber(ARGV[j])
      if ts == previous then
        repeat_count = repeat_count + 1
      else
        repeat_count = 0
      end
      previous = ts
      if ts > now - len then
        -- A call stamped in the future (clock skew) counts as made now.
        local score = math.min(ts, now)
        redis.call('ZADD', key, fmt(score), 'a:' .. fmt(ts) .. ':' .. fmt(repeat_count))
      end
    end
    if redis.call('EXISTS', key) == 1 then
      redis.call('PEXPIRE', key, fmt(math.ceil(len / 1000)))
    end
    redis.call('SET', marker, fmt(now))
    seeded = seeded + 1
  end
end
return seeded
"""
)

# KEYS: cooldown, then (log, marker) per window. ARGV: (limit, len_us) per window. Read-only.
# Returns {now, cooldown_wait, reason, then (used, wait, has_marker) per window}.
_STATUS_LUA = (
    _LUA_COMMON
    + """
local now = now_us()
local result = {now, cooldown_wait(KEYS[1], now), redis.call('HGET', KEYS[1], 'reason') or ''}
local n = (#KEYS - 1) / 2
for i = 1, n do
  local used, wait = window_usage(KEYS[2 * i], tonumber(ARGV[2 * i - 1]),
    tonumber(ARGV[2 * i]), now)
  table.insert(result, used)
  table.insert(result, wait)
  table.insert(result, redis.call('EXISTS', KEYS[2 * i + 1]))
end
return result
"""
)


class LimiterStateLostError(RuntimeError):
    """Redis kept losing the limiter's state while it was being re-seeded."""


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
        self._cooldown = redis_client.register_script(_COOLDOWN_LUA)
        self._exhaust = redis_client.register_script(_EXHAUST_LUA)
        self._rebuild = redis_client.register_script(_REBUILD_LUA)
        self._status = redis_client.register_script(_STATUS_LUA)

    @property
    def windows(self) -> tuple[RateWindow, ...]:
        """The enforced windows, in configuration order."""
        return self._windows

    def acquire(self, *, cost_id: str | None = None) -> Grant:
        """Take one token from every window atomically, or say how long until all have one."""
        keys = [self._cooldown_key, self._seq_key]
        args: list[str | int] = [cost_id or ""]
        for log_key, marker_key, window, window_us in zip(
            self._log_keys, self._marker_keys, self._windows, self._window_us, strict=True
        ):
            keys += [log_key, marker_key]
            args += [window.limit, window_us]
        for _ in range(_MAX_ATTEMPTS):
            code, wait_us, now_us = self._acquire(keys=keys, args=args)
            if code != _NOT_INITIALIZED:
                return Grant(granted=code == 1, retry_after=wait_us / _MICROS, at=now_us / _MICROS)
            self.ensure_initialized()
        raise LimiterStateLostError("rate limiter state disappeared again after re-seeding")

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

    def available_now(self) -> int:
        """How many tokens could be granted right now (re-seeding lost state first)."""
        self.ensure_initialized()
        return self.status().available

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
