"""The sandbox's decisions and mutable state: config, limits, scripted faults and the call log."""

import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from datetime import time as clock_time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.core.market_calendar import NEW_YORK, last_completed_trading_day
from shared.core.rate_windows import RateWindow, parse_rate_limits
from stockpile.sandbox.config import Outcome, SandboxConfig, ScriptStep
from stockpile.sandbox.data import SeriesStore
from stockpile.sandbox.limits import ServedCallLimiter

SERVED_FUNCTION = "TIME_SERIES_DAILY"
PREMIUM_FUNCTIONS = frozenset({"TIME_SERIES_DAILY_ADJUSTED"})
DEMO_APIKEY = "demo"
DEMO_SYMBOLS = frozenset({"IBM"})
SLOW_SYMBOL = "SLOW"
FAULT_SYMBOLS: Mapping[str, Outcome] = {
    "ERR500": Outcome.HTTP_500,
    "ERR503": Outcome.HTTP_503,
    "TRUNC": Outcome.TRUNCATED,
    "HTML": Outcome.HTML,
    "HTML502": Outcome.HTML_502,
    "EMPTY": Outcome.EMPTY,
}
# Letters, digits, dots and dashes, e.g. IBM, BRK.B, TSCO.LON, 600104.SHH.
SYMBOL_PATTERN = re.compile(r"[A-Z0-9][A-Z0-9.\-]{0,15}")
MAX_RECORDED_CALLS = 100_000
_ANY_SYMBOL = "*"


@dataclass(frozen=True)
class QueryParams:
    """The /query parameters the sandbox looks at, exactly as sent (None when absent)."""

    function: str | None = None
    symbol: str | None = None
    outputsize: str | None = None
    datatype: str | None = None
    apikey: str | None = None


@dataclass(frozen=True)
class Decision:
    """How to answer one /query call."""

    outcome: Outcome
    latency_seconds: float
    function: str
    symbol: str
    end: date
    full: bool
    csv: bool
    apikey: str


class CallRecord(BaseModel):
    """One /query call as the stats report it; the apikey is deliberately absent."""

    t: float
    symbol: str | None
    function: str | None
    outputsize: str | None
    datatype: str | None
    outcome: Outcome
    latency_seconds: float


class SandboxStats(BaseModel):
    """Every recorded call (the newest MAX_RECORDED_CALLS) and exact counts per outcome."""

    calls: list[CallRecord]
    counts: dict[Outcome, int]


class FaultScript(BaseModel):
    """Upcoming outcomes for calls about ``symbol`` (any symbol when None), used in order."""

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = None
    outcomes: list[ScriptStep] = Field(min_length=1)


class Sandbox:
    """Decides every /query answer; all methods are safe to call from several threads."""

    def __init__(
        self,
        config: SandboxConfig,
        *,
        clock: Callable[[], float] = time.time,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = SeriesStore()
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._config = config
        self._limiter = _limiter_for(config)
        self._scripts: dict[str, deque[ScriptStep]] = {}
        self._calls: deque[CallRecord] = deque(maxlen=MAX_RECORDED_CALLS)
        self._counts: dict[Outcome, int] = {}

    @property
    def config(self) -> SandboxConfig:
        """The settings in force."""
        return self._config

    def configure(self, changes: Mapping[str, Any]) -> SandboxConfig:
        """Apply a partial update; new limits start with empty counters."""
        with self._lock:
            config = SandboxConfig.model_validate({**self._config.model_dump(), **changes})
            if config.limits != self._config.limits:
                self._limiter = _limiter_for(config)
            self._config = config
            return config

    def reset(self) -> None:
        """Forget recorded calls, limit counters and scripted faults (the config stays)."""
        with self._lock:
            self._limiter = _limiter_for(self._config)
            self._scripts.clear()
            self._calls.clear()
            self._counts.clear()

    def script(self, script: FaultScript) -> None:
        """Queue outcomes for the next calls about a symbol (or any symbol)."""
        key = _ANY_SYMBOL if script.symbol is None else script.symbol.strip().upper()
        with self._lock:
            self._scripts.setdefault(key, deque()).extend(script.outcomes)

    def pending_scripts(self) -> list[FaultScript]:
        """Scripted outcomes not used yet."""
        with self._lock:
            return [
                FaultScript(symbol=None if key == _ANY_SYMBOL else key, outcomes=list(steps))
                for key, steps in self._scripts.items()
                if steps
            ]

    def stats(self) -> SandboxStats:
        """Recorded calls and counts per outcome."""
        with self._lock:
            return SandboxStats(calls=list(self._calls), counts=dict(self._counts))

    def end_date(self) -> date:
        """The newest trading day the sandbox serves: the last one completed at its 'now'."""
        return self._end_for(self._config)

    def warm(self) -> None:
        """Build the calendar and one history now, so the first real call is not the slow one."""
        self.store.body("IBM", self.end_date(), full=False, csv=False)

    def decide(self, params: QueryParams) -> Decision:
        """Choose the answer for one call, count it against the limits if served, and record it."""
        symbol = (params.symbol or "").strip()
        symbol_key = symbol.upper()
        full = (params.outputsize or "").strip().lower() == "full"
        with self._lock:
            config = self._config
            now = self._clock()
            step = self._next_step(symbol_key)
            latency = config.latency_seconds
            if step == "slow" or symbol_key == SLOW_SYMBOL:
                latency += config.slow_seconds
            outcome = (
                _forced(step)
                or _forced(config.fault)
                or FAULT_SYMBOLS.get(symbol_key)
                or _rejection(params, symbol_key, full, config)
                or self._limit(params.apikey or "", now)
            )
            self._calls.append(
                CallRecord(
                    t=now,
                    symbol=params.symbol,
                    function=params.function,
                    outputsize=params.outputsize,
                    datatype=params.datatype,
                    outcome=outcome,
                    latency_seconds=latency,
                )
            )
            self._counts[outcome] = self._counts.get(outcome, 0) + 1
        return Decision(
            outcome=outcome,
            latency_seconds=latency,
            function=params.function or "",
            symbol=symbol,
            end=self._end_for(config),
            full=full,
            csv=(params.datatype or "").strip().lower() == "csv",
            apikey=params.apikey or "",
        )

    def _end_for(self, config: SandboxConfig) -> date:
        if config.today is None:
            return last_completed_trading_day(self._now())
        evening = datetime.combine(config.today, clock_time(23, 59), NEW_YORK)
        return last_completed_trading_day(evening)

    def _next_step(self, symbol_key: str) -> ScriptStep | None:
        for key in (symbol_key, _ANY_SYMBOL):
            steps = self._scripts.get(key)
            if steps:
                return steps.popleft()
        return None

    def _limit(self, apikey: str, now: float) -> Outcome:
        if self._limiter is None:
            return Outcome.OK
        window = self._limiter.acquire(apikey, now)
        if window is None:
            return Outcome.OK
        return _limit_outcome(window)


def _limiter_for(config: SandboxConfig) -> ServedCallLimiter | None:
    if config.limits is None:
        return None
    return ServedCallLimiter(parse_rate_limits(config.limits))


def _forced(step: ScriptStep | None) -> Outcome | None:
    # "ok" and "slow" steps let the call be answered normally.
    return step if isinstance(step, Outcome) and step is not Outcome.OK else None


def _rejection(
    params: QueryParams, symbol_key: str, full: bool, config: SandboxConfig
) -> Outcome | None:
    apikey = (params.apikey or "").strip()
    if not apikey or apikey in config.rejected_apikeys:
        return Outcome.BAD_APIKEY
    function = (params.function or "").strip().upper()
    if function in PREMIUM_FUNCTIONS:
        return Outcome.PREMIUM_ENDPOINT
    if function != SERVED_FUNCTION:
        return Outcome.INVALID_FUNCTION
    if apikey == DEMO_APIKEY and symbol_key not in DEMO_SYMBOLS:
        return Outcome.DEMO_KEY
    if not SYMBOL_PATTERN.fullmatch(symbol_key) or symbol_key in config.invalid_symbols:
        return Outcome.INVALID_SYMBOL
    if full and not config.premium:
        return Outcome.PREMIUM_OUTPUTSIZE
    return None


def _limit_outcome(window: RateWindow) -> Outcome:
    if window.seconds < 60:
        return Outcome.BURST_LIMIT
    if window.seconds >= 86_400:
        return Outcome.DAILY_LIMIT
    return Outcome.PLAN_LIMIT
