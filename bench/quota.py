"""Quota use under backlog: how much of the AlphaVantage budget the fleet spends, and overshoot.

    .venv/bin/python -m bench.quota [--scenario free|premium|premium75|all]

Starts throwaway PostgreSQL and Redis, the sandbox AlphaVantage with its own limits off (every
call is served and logged with its arrival time), then per scenario two worker instances of two
prefork processes each plus one beat, all with the production defaults except the rate limits.
A backlog of jobs for distinct symbols is created and the dispatcher is woken once (as
`enqueue_due_refreshes` does); from the first call on, the sandbox's call log is measured for a
whole number of the longest window:

- use: calls made / calls a perfect limiter would allow in the same interval (same start,
  nominal windows, every grant at the earliest allowed instant, zero latency);
- overshoot: the most calls seen in any sliding interval of a window's length, above its limit;
- token reuse delay: for the longest window (limit N, length T), c[i+N] - c[i] - T over the
  calls c: how late each freed token was used again (a perfect limiter: 0);
- send-to-arrival: time from the token's confirmation right before the request (the audit log's
  `called_at`, Redis clock) to the call's arrival at the sandbox; the limiter's margin has to cover
  its spread.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import redis
from celery import Celery
from sqlalchemy import Engine, text
from sqlmodel import Session

from bench.stack import Stack, fresh_database, running_stack
from shared.core.db import make_engine
from shared.core.rate_windows import RateWindow, parse_rate_limits
from shared.domain.dispatch import CONTROL_QUEUE
from shared.domain.jobs.records import create_job
from shared.domain.queue import TASK_DISPATCH_DUE_JOBS
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import SandboxHandle, running_sandbox
from tests.processes import celery_beat, celery_worker
from tests.support import max_in_sliding_interval

WORKER_INSTANCES = 2
PROCESSES_PER_INSTANCE = 2
# After the measured interval: calls already granted may still be arriving.
SETTLE_SECONDS = 2.0
FIRST_CALL_TIMEOUT_SECONDS = 60.0
# The sandbox builds each new symbol's history day by day from 1999-11 to its "today": for the
# real today that costs ~70 ms per distinct symbol and made the sandbox, not Stockpile, the
# bottleneck at premium rates. Seven months of history still fill a 100-bar compact answer.
SANDBOX_TODAY = date(2000, 6, 1)


@dataclass(frozen=True)
class Scenario:
    """One limiter setting, measured over a whole number of its longest window."""

    name: str
    limits: str
    windows_measured: int
    backlog: int


SCENARIOS: dict[str, Scenario] = {
    # The free tier is 1/second and 25/day: a short burst, then a long wait. Scaled down in time,
    # the day becomes 30 s and the burst cap 2/second, so a burst (20 calls, ~10 s) is a third
    # of the long window and three windows take 90 s. The dispatcher's tick (10 s by default)
    # is a third of the scaled window, where for the real day it is 0.01 %: this setting is
    # much harder on tick latency than production.
    "free": Scenario("free tier, scaled", "2/second,20/30second", 3, 100),
    # A premium key: 1200/minute, measured at full scale (the minute is not shortened, so the
    # dispatcher tick and worker throughput weigh exactly as in production).
    "premium": Scenario("premium 1200/minute", "1200/minute", 2, 3000),
    # The smallest premium plan: a rate this machine's fleet keeps up with easily, so the use
    # measured is the dispatcher's and the limiter's alone. Not in "all" (two more minutes).
    "premium75": Scenario("premium 75/minute", "75/minute", 2, 200),
}
DEFAULT_SCENARIOS = ("free", "premium")


@dataclass(frozen=True)
class WindowCheck:
    """The sandbox's view of one configured window."""

    window: RateWindow
    max_seen: int

    @property
    def overshoot(self) -> int:
        """Calls above the limit in the worst sliding interval."""
        return max(0, self.max_seen - self.window.limit)


@dataclass(frozen=True)
class Result:
    """What one scenario measured."""

    scenario: Scenario
    interval_seconds: float
    calls: int
    allowed: int
    checks: tuple[WindowCheck, ...]
    reuse_delays: tuple[float, ...]
    send_to_arrival: tuple[float, ...]
    not_ok_replies: int
    jobs_failed: int
    load_before: float

    @property
    def use(self) -> float:
        """Calls made as a fraction of what a perfect limiter allows."""
        return self.calls / self.allowed

    @property
    def steady_rate(self) -> float | None:
        """Long-run call rate under backlog as a fraction of the longest window's nominal rate."""
        if not self.reuse_delays:
            return None
        seconds = max(c.window.seconds for c in self.checks)
        return seconds / (seconds + statistics.fmean(self.reuse_delays))


def perfect_grants(windows: Sequence[RateWindow], start: float, end: float) -> int:
    """Grants a zero-latency limiter makes in [start, end) under a backlog, from `start` on."""
    grants: list[float] = []
    t = start
    while True:
        for window in windows:
            if len(grants) >= window.limit:
                # The grant `limit` back must have left (t - seconds, t].
                t = max(t, grants[-window.limit] + window.seconds)
        if t >= end:
            return len(grants)
        grants.append(t)


def reuse_delays(times: Sequence[float], window: RateWindow) -> list[float]:
    """For each call, how long after its token freed (c[i] + T) the token was used again."""
    ordered = sorted(times)
    n = window.limit
    return [ordered[i + n] - ordered[i] - window.seconds for i in range(len(ordered) - n)]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def machine() -> str:
    """CPU model, core count and Python version of this machine."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{model}, nproc {os.cpu_count()}, Python {platform.python_version()}"


def reset(engine: Engine, redis_url: str, sandbox: SandboxHandle) -> None:
    """Empty tables, the throwaway Redis (broker and limiter) and the sandbox's log."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE financial_data, jobs, api_calls, tracked_symbols"))
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    sandbox.reset()


def create_backlog(engine: Engine, count: int) -> None:
    """`count` queued jobs for distinct symbols, committed and never sent (the dispatcher will)."""
    with Session(engine) as session:
        for i in range(count):
            create_job(session, f"Q{i:05d}", source="api")
        session.commit()


def wake_dispatcher(redis_url: str) -> None:
    """Send one dispatcher run now, as `enqueue_due_refreshes` does after creating jobs."""
    app = Celery("bench-quota", broker=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    app.send_task(TASK_DISPATCH_DUE_JOBS, queue=CONTROL_QUEUE)
    app.close()


@contextmanager
def fleet(env: dict[str, str], keep_logs: Path | None) -> Iterator[None]:
    """Two worker instances and one beat, stopped (warm) at the end; logs copied if asked."""
    with ExitStack() as stack:
        processes = [
            stack.enter_context(
                celery_worker(env, name=f"quota{i}", concurrency=PROCESSES_PER_INSTANCE)
            )
            for i in range(WORKER_INSTANCES)
        ]
        processes.append(stack.enter_context(celery_beat(env, name="quota-beat")))
        yield
        if keep_logs is not None:
            keep_logs.mkdir(parents=True, exist_ok=True)
            for process in processes:
                shutil.copy(process.log_path, keep_logs / process.log_path.name)


def first_call_time(sandbox: SandboxHandle) -> float:
    """Wait for the first call the sandbox receives and return its time."""
    deadline = time.monotonic() + FIRST_CALL_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        calls = sandbox.stats().calls
        if calls:
            return min(call.t for call in calls)
        time.sleep(0.05)
    raise TimeoutError("no call reached the sandbox")


def run_scenario(
    scenario: Scenario,
    stack: Stack,
    database_url: str,
    sandbox: SandboxHandle,
    keep_logs: Path | None = None,
) -> Result:
    """Run the fleet against a backlog and measure the sandbox's call log."""
    windows = parse_rate_limits(scenario.limits)
    longest = max(windows, key=lambda w: w.seconds)
    interval = scenario.windows_measured * longest.seconds
    engine = make_engine(database_url)
    reset(engine, stack.redis_url, sandbox)
    env = {
        **stack.process_env(database_url),
        "ALPHAVANTAGE_BASE_URL": sandbox.base_url,
        "ALPHAVANTAGE_RATE_LIMITS": scenario.limits,
        "LOG_LEVEL": "INFO",  # the process helpers wait for Celery's "ready." line
    }
    load_before = os.getloadavg()[0]
    with fleet(env, keep_logs):
        create_backlog(engine, scenario.backlog)
        wake_dispatcher(stack.redis_url)
        start = first_call_time(sandbox)
        time.sleep(max(0.0, start + interval + SETTLE_SECONDS - time.time()))
    calls = sandbox.stats().calls
    times = [call.t for call in calls]
    measured = [t for t in times if start <= t < start + interval]
    with engine.connect() as conn:
        failed = conn.execute(text("SELECT count(*) FROM jobs WHERE status = 'failed'")).scalar()
        sent: dict[str, float] = dict(
            conn.execute(text("SELECT symbol, extract(epoch FROM called_at) FROM api_calls")).all()
        )
    engine.dispose()
    arrivals = {call.symbol: call.t for call in calls if call.symbol}
    latency = [arrivals[s] - float(g) for s, g in sent.items() if s in arrivals]
    return Result(
        scenario=scenario,
        interval_seconds=interval,
        calls=len(measured),
        allowed=perfect_grants(windows, start, start + interval),
        checks=tuple(WindowCheck(w, max_in_sliding_interval(times, w.seconds)) for w in windows),
        reuse_delays=tuple(reuse_delays(measured, longest)),
        send_to_arrival=tuple(latency),
        not_ok_replies=sum(1 for call in calls if call.outcome != "ok"),
        jobs_failed=int(failed or 0),
        load_before=load_before,
    )


def render(results: Sequence[Result]) -> str:
    """The results as a Markdown table plus the latency details."""
    lines = [
        "| setting | measured | calls made | perfect limiter | use | overshoot (worst "
        "sliding interval / limit) | token reuse delay mean / p95 / max | steady rate | "
        "throttle or error replies | failed jobs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        overshoot = ", ".join(f"{c.window.label}: {c.max_seen}/{c.window.limit}" for c in r.checks)
        delays = r.reuse_delays
        delay_text = (
            f"{statistics.fmean(delays):.2f} / {percentile(delays, 0.95):.2f} / {max(delays):.2f} s"
            if delays
            else "n/a"
        )
        rate = r.steady_rate
        rate_text = "n/a" if rate is None else f"{100 * rate:.1f} %"
        lines.append(
            f"| {r.scenario.name} (`{r.scenario.limits}`) | {r.interval_seconds:.0f} s "
            f"({r.scenario.windows_measured} windows) | {r.calls} | {r.allowed} | "
            f"{100 * r.use:.1f} % | {overshoot} | {delay_text} | {rate_text} | "
            f"{r.not_ok_replies} | {r.jobs_failed} |"
        )
    lines.append("")
    for r in results:
        lat = r.send_to_arrival
        if lat:
            lines.append(
                f"- {r.scenario.name}: send-to-arrival p50 {1000 * percentile(lat, 0.5):.1f} ms,"
                f" p99 {1000 * percentile(lat, 0.99):.1f} ms, max {1000 * max(lat):.1f} ms over "
                f"{len(lat)} calls; load average before: {r.load_before:.2f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen scenarios and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.quota", description=__doc__)
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        default="all",
        help=f"'all' runs {' and '.join(DEFAULT_SCENARIOS)}; others only when named",
    )
    parser.add_argument("--keep-logs", type=Path, help="copy the workers' and beat's logs here")
    args = parser.parse_args(argv)
    names = DEFAULT_SCENARIOS if args.scenario == "all" else (args.scenario,)
    chosen = [SCENARIOS[name] for name in names]
    results: list[Result] = []
    with (
        running_stack(None, None) as stack,
        fresh_database(stack, "quota") as database_url,
        running_sandbox(SandboxConfig(limits=None, today=SANDBOX_TODAY)) as sandbox,
    ):
        for scenario in chosen:
            print(f"running {scenario.name} ({scenario.limits})...", file=sys.stderr)
            logs = args.keep_logs / scenario.limits.replace("/", "per") if args.keep_logs else None
            results.append(run_scenario(scenario, stack, database_url, sandbox, logs))
    print(f"Machine: {machine()}")
    print(
        f"Fleet: {WORKER_INSTANCES} worker instances x {PROCESSES_PER_INSTANCE} processes, 1 beat"
    )
    print()
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
