"""A year at 10,000 symbols: request paths and periodic work on a loaded database, and the budget.

    .venv/bin/python -m bench.scale [--symbols 10000] [--days 365] [--update-docs]

On throwaway PostgreSQL and Redis, in one run:

1. baseline: the endpoints (p50 of 15 sequential requests each) and the periodic work (beat's
   refresh check `symbols_due`, the dispatcher's tick `dispatch_due_jobs`, wall time in this
   process) on an empty database;
2. a year of operation generated in SQL: `--symbols` tracked symbols, 250 price rows each,
   one finished job and one audited call per symbol and day for `--days` days, then beat's
   `enqueue_due_refreshes` creates a backlog of one queued job per symbol (every symbol lags);
3. beat's refresh check at the daily peak (every symbol due, before the backlog exists), the
   same figures on the loaded database, and one retention run (what it deletes per second);
4. the fleet (2 worker instances x 2 processes, beat) against the sandbox under
   `--limits` (300/minute) for `--minutes` whole minutes from the first call, spending that
   backlog: calls in each consecutive minute and the most in any sliding 60 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import Engine, text

from bench.processes import checkout_label, running_api
from bench.quota import (
    SANDBOX_TODAY,
    fleet,
    machine,
    wake_dispatcher,
)
from bench.stack import Stack, fresh_database, running_stack
from shared.core.db import make_engine
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import running_sandbox
from tests.support import max_in_sliding_interval

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
START_MARKER = "<!-- bench:scale:start -->"
END_MARKER = "<!-- bench:scale:end -->"
REQUESTS = 15
PRICE_DAYS = 250
ENDPOINT_TARGET_MS = 50.0
PERIODIC_TARGET_MS = 100.0


def endpoints(symbols: int) -> list[tuple[str, str]]:
    """(name, path) of every request path measured; at the default limits."""
    return [
        ("GET /jobs", "/jobs"),
        ("GET /jobs?page=1000", "/jobs?page=1000"),
        ("GET /jobs?status=failed", "/jobs?status=failed"),
        ("GET /jobs?status=failed&page=1000", "/jobs?status=failed&page=1000"),
        ("GET /jobs?status=queued", "/jobs?status=queued"),
        ("GET /jobs?symbol=…", f"/jobs?symbol=S{symbols // 2:05d}"),
        ("GET /symbols", "/symbols"),
        ("GET /symbols (last page)", f"/symbols?page={max(1, symbols // 100)}"),
        ("GET /api/budget", "/api/budget"),
        ("GET /metrics", "/metrics"),
        ("GET /readyz", "/readyz"),
    ]


def p50_ms(action: Callable[[], object], rounds: int = REQUESTS) -> float:
    """Median wall time of `rounds` sequential runs of `action`, in ms."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure_endpoints(url: str, paths: Sequence[tuple[str, str]]) -> dict[str, float]:
    """p50 per endpoint; every answer must be a 200."""
    results: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=30) as client:

        def get(path: str) -> None:
            response = client.get(path)
            if response.status_code != 200:
                raise RuntimeError(f"{path}: {response.status_code} {response.text[:200]}")

        for name, path in paths:
            get(path)  # warm: connections, prepared statements
            results[name] = p50_ms(lambda path=path: get(path))  # type: ignore[misc]
    return results


def measure_refresh_check() -> float:
    """Beat's refresh check when every tracked symbol lags and none has a job (the daily peak)."""
    from shared.core.db import session_scope
    from shared.core.models import utcnow
    from shared.core.settings import get_settings
    from shared.domain.tracking import symbols_due

    min_interval = timedelta(seconds=get_settings().refresh_min_interval_seconds)

    def refresh_check() -> None:
        with session_scope() as session:
            symbols_due(session, now=utcnow(), min_interval=min_interval)

    refresh_check()
    return p50_ms(refresh_check, rounds=5)


def measure_periodic() -> dict[str, float]:
    """Beat's refresh check and the dispatcher's tick, in this process (DATABASE_URL set)."""
    from shared.core.db import session_scope
    from shared.core.models import utcnow
    from shared.core.settings import get_settings
    from shared.domain.audit import audited_call_times
    from shared.domain.dispatch import dispatch_due_jobs
    from shared.domain.tracking import symbols_due
    from shared.upstream.factory import make_limiter, make_redis

    settings = get_settings()
    min_interval = timedelta(seconds=settings.refresh_min_interval_seconds)

    def refresh_check() -> None:
        with session_scope() as session:
            symbols_due(session, now=utcnow(), min_interval=min_interval)

    limiter = make_limiter(settings, make_redis(settings), audited_call_times)

    def send(_job_id: uuid.UUID) -> bool:
        # No broker here: the tick's own work (queries, marking jobs sent) is what is timed.
        return True

    def tick() -> None:
        dispatch_due_jobs(
            limiter=limiter,
            send=send,
            resend_after=timedelta(seconds=settings.job_resend_after_seconds),
            lease_window=timedelta(seconds=settings.job_heartbeat_timeout_seconds),
        )

    refresh_check()
    first_tick = p50_ms(tick, rounds=1)
    return {
        "beat's refresh check (symbols_due)": p50_ms(refresh_check),
        "dispatcher tick, first (sends up to 100)": first_tick,
        "dispatcher tick (nothing to send)": p50_ms(tick),
    }


def load_year(engine: Engine, symbols: int, days: int) -> None:
    """A year of operation: symbols, prices, finished jobs, audited calls (plain SQL)."""
    steps = [
        "INSERT INTO tracked_symbols (symbol, created_at)"
        " SELECT 'S' || lpad(s::text, 5, '0'), now() - interval '400 days'"
        " FROM generate_series(0, :symbols - 1) s ON CONFLICT DO NOTHING",
        # Prices end a week ago: every symbol lags the market, so the refresh check finds all.
        "INSERT INTO financial_data"
        " (symbol, date, open_price, high_price, low_price, close_price, volume)"
        " SELECT 'S' || lpad(s::text, 5, '0'), current_date - 7 - d, 100 + d % 7, 101 + d % 7,"
        " 99 + d % 7, 100.5 + d % 5, 1000000 + s"
        " FROM generate_series(0, :symbols - 1) s, generate_series(0, :price_days - 1) d",
    ]
    chunk = 30
    for start in range(1, days + 1, chunk):
        end = min(days, start + chunk - 1)
        steps.append(
            "INSERT INTO jobs (id, symbol, status, source, attempts, created_at, started_at,"
            " finished_at, rows_written, error_code, error_message)"
            " SELECT gen_random_uuid(), 'S' || lpad(s::text, 5, '0'),"
            " CASE WHEN (s + d) % 50 = 0 THEN 'failed' ELSE 'succeeded' END, 'beat', 1,"
            " now() - make_interval(days => d, secs => s), now() - make_interval(days => d,"
            " secs => s - 1), now() - make_interval(days => d, secs => s - 2),"
            " CASE WHEN (s + d) % 50 = 0 THEN NULL ELSE 1 END,"
            " CASE WHEN (s + d) % 50 = 0 THEN 'upstream_error' END,"
            " CASE WHEN (s + d) % 50 = 0 THEN 'synthetic' END"
            f" FROM generate_series({start}, {end}) d, generate_series(0, :symbols - 1) s"
            " ORDER BY d DESC, s DESC"
        )
        steps.append(
            "INSERT INTO api_calls (called_at, symbol, outputsize, outcome, duration_ms)"
            " SELECT now() - make_interval(days => d, secs => s), 'S' || lpad(s::text, 5, '0'),"
            " 'compact', CASE WHEN (s + d) % 50 = 0 THEN 'upstream_error' ELSE 'ok' END, 120"
            # Calls start today (day 0), so /api/budget's calls_today has a day's rows to count.
            f" FROM generate_series({start - 1}, {end - 1}) d,"
            " generate_series(0, :symbols - 1) s"
            " ORDER BY d DESC, s DESC"
        )
    for statement in steps:
        started = time.monotonic()
        with engine.begin() as conn:
            # The engine's 30 s statement timeout is for requests, not for loading millions.
            conn.execute(text("SET LOCAL statement_timeout = 0"))
            conn.execute(text(statement), {"symbols": symbols, "price_days": PRICE_DAYS})
        print(f"  {time.monotonic() - started:6.1f} s  {statement[:60]}…", file=sys.stderr)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("VACUUM ANALYZE"))


# The periodic work's and the listing's statements, read-only versions, for --explain.
EXPLAINED = {
    "due jobs (take_due_jobs)": "SELECT id FROM jobs WHERE status = 'queued'"
    " AND (not_before IS NULL OR not_before <= now())"
    " AND (dispatched_at IS NULL OR dispatched_at < now() - interval '120 s')"
    " ORDER BY created_at LIMIT 100",
    "sent recently (count_dispatched_waiting)": "SELECT count(*) FROM jobs"
    " WHERE status = 'queued' AND dispatched_at >= now() - interval '120 s'",
    "expired leases (release_expired_leases)": "SELECT id FROM jobs"
    " WHERE status = 'running' AND lease_expires_at < now()",
    "failed jobs, page 1000": "SELECT id FROM jobs WHERE status = 'failed'"
    " ORDER BY created_at DESC, id LIMIT 5 OFFSET 4995",
}


def explain(engine: Engine) -> None:
    """EXPLAIN ANALYZE of the statements above, to stderr."""
    with engine.connect() as conn:
        for name, sql in EXPLAINED.items():
            plan = conn.execute(text(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}")).scalars().all()
            print(f"-- {name}\n" + "\n".join(plan), file=sys.stderr)


def create_backlog() -> tuple[int, float]:
    """Beat's own path: a queued refresh job per lagging symbol; (jobs, seconds)."""
    from shared.core.models import utcnow
    from shared.core.settings import get_settings
    from shared.domain.tracking import enqueue_due_refreshes

    started = time.perf_counter()
    created = enqueue_due_refreshes(
        now=utcnow(),
        min_interval=timedelta(seconds=get_settings().refresh_min_interval_seconds),
    )
    return len(created), time.perf_counter() - started


def measure_retention() -> tuple[int, float]:
    """One retention run at the default windows (90 days), capped at 10 s: (rows, seconds)."""
    from shared.core.settings import get_settings
    from shared.domain.retention import apply_retention, call_retention, job_retention

    settings = get_settings()
    started = time.perf_counter()
    report = apply_retention(
        job_keep=job_retention(settings), call_keep=call_retention(settings), run_seconds=10
    )
    return report.jobs + report.api_calls, time.perf_counter() - started


@dataclass(frozen=True)
class Fill:
    """Calls per consecutive minute from the first call, and the most in any sliding 60 s."""

    limits: str
    limit: int
    per_minute: list[int]
    max_sliding: int
    load: float


def measure_fill(stack: Stack, database_url: str, limits: str, minutes: int, limit: int) -> Fill:
    """The fleet spends the backlog under `limits`; the sandbox's log is the judge."""
    env = {
        **stack.process_env(database_url),
        "ALPHAVANTAGE_RATE_LIMITS": limits,
        "LOG_LEVEL": "INFO",  # the process helpers wait for Celery's "ready." line
    }
    load = os.getloadavg()[0]
    with running_sandbox(SandboxConfig(limits=None, today=SANDBOX_TODAY)) as sandbox:
        env["ALPHAVANTAGE_BASE_URL"] = sandbox.base_url
        with fleet(env, None):
            wake_dispatcher(stack.redis_url)
            deadline = time.monotonic() + 60
            while not sandbox.stats().calls:
                if time.monotonic() > deadline:
                    raise TimeoutError("no call reached the sandbox")
                time.sleep(0.05)
            start = min(call.t for call in sandbox.stats().calls)
            time.sleep(max(0.0, start + 60 * minutes + 2 - time.time()))
        times = [call.t for call in sandbox.stats().calls]
    per_minute = [
        sum(1 for t in times if start + 60 * m <= t < start + 60 * (m + 1)) for m in range(minutes)
    ]
    return Fill(limits, limit, per_minute, max_in_sliding_interval(times, 60.0), load)


def render(
    empty: dict[str, float],
    loaded: dict[str, float],
    symbols: int,
    days: int,
    backlog: tuple[int, float],
    retention: tuple[int, float],
    fill: Fill,
    peak_check: float,
    load: float,
) -> str:
    """The Markdown table for docs/benchmarks.md."""
    jobs = symbols * days
    lines = [
        f"Run on {datetime.now(UTC):%Y-%m-%d} with the code of commit"
        f" {checkout_label(DOCS.parents[1])}.",
        f"Machine: {machine()}; load average (1 min) when the loaded database was measured:"
        f" {load:.2f}, before the fleet ran: {fill.load:.2f} (the machine is shared).",
        f"Loaded: {symbols:,} tracked symbols, {symbols * PRICE_DAYS:,} price rows, {jobs:,}"
        f" finished jobs, {jobs:,} audited calls, and a backlog of {backlog[0]:,} queued"
        " refresh jobs.",
        "",
        "| what | empty database (ms) | a year loaded (ms) | target | met |",
        "|---|--:|--:|--:|---|",
    ]
    for name, value in loaded.items():
        target = PERIODIC_TARGET_MS if "tick" in name or "refresh" in name else ENDPOINT_TARGET_MS
        met = "yes" if value < target else "**no**"
        lines.append(f"| {name} | {empty[name]:.1f} | {value:.1f} | < {target:.0f} | {met} |")
    rows, seconds = retention
    lines += [
        "",
        f"Beat's refresh check at the daily peak (every symbol lags, none has a job in flight,"
        f" so it returns all {symbols:,}): {peak_check:.1f} ms; creating their jobs"
        f" (`enqueue_due_refreshes`, one insert per job): {backlog[1]:.1f} s.",
        "",
        f"Retention (90 days) deleted {rows:,} rows in its first run of {seconds:.1f} s"
        f" ({rows / seconds:,.0f} rows/s, batches of 500, one short transaction each).",
        "",
        f"Budget under `{fill.limits}`, 2 worker instances x 2 processes and beat, spending the"
        " backlog; calls the sandbox received in each consecutive minute from the first call:",
        "",
        "| minute | calls | fill |",
        "|--:|--:|--:|",
    ]
    for m, calls in enumerate(fill.per_minute, 1):
        lines.append(f"| {m} | {calls} | {100 * calls / fill.limit:.1f} % |")
    lines += ["", f"Most calls in any sliding 60 s: {fill.max_sliding} (limit {fill.limit}).", ""]
    return "\n".join(lines)


def write_docs(markdown: str) -> None:
    """Replace this benchmark's block in docs/benchmarks.md."""
    text_ = DOCS.read_text(encoding="utf-8")
    block = f"{START_MARKER}\n{markdown}{END_MARKER}"
    head, found, rest = text_.partition(START_MARKER)
    if not found:
        raise SystemExit(f"{DOCS} has no {START_MARKER} marker")
    DOCS.write_text(head + block + rest.partition(END_MARKER)[2], encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole benchmark and print (and optionally write) its table."""
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--symbols", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--limits", default="300/minute")
    parser.add_argument("--minutes", type=int, default=4)
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--explain", action="store_true", help="plans on the loaded database")
    args = parser.parse_args(argv)
    limit = int(args.limits.split("/")[0])
    with running_stack(None, None) as stack, fresh_database(stack, "scale") as database_url:
        env = stack.process_env(database_url)
        os.environ.update(env)  # this process's own calls (the periodic work) use the same
        engine = make_engine(database_url)
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM tracked_symbols"))
        paths = endpoints(args.symbols)
        with running_api(env) as (_process, url):
            print("baseline: empty database", file=sys.stderr)
            empty = {**measure_endpoints(url, paths), **measure_periodic()}
            print("loading a year of operation", file=sys.stderr)
            load_year(engine, args.symbols, args.days)
            every_symbol_due = measure_refresh_check()
            backlog = create_backlog()
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("SET statement_timeout = 0"))
                conn.execute(text("VACUUM ANALYZE jobs"))
            if args.explain:
                explain(engine)
            print("measuring the loaded database", file=sys.stderr)
            load = os.getloadavg()[0]
            loaded = {**measure_endpoints(url, paths), **measure_periodic()}
        # The dispatcher ticks above marked jobs as sent without a broker: send them again.
        with engine.begin() as conn:
            conn.execute(text("UPDATE jobs SET dispatched_at = NULL WHERE status = 'queued'"))
        retention = measure_retention()
        engine.dispose()
        print(f"fleet under {args.limits} for {args.minutes} minutes", file=sys.stderr)
        fill = measure_fill(stack, database_url, args.limits, args.minutes, limit)
    markdown = render(
        empty, loaded, args.symbols, args.days, backlog, retention, fill, every_symbol_due, load
    )
    print(markdown)
    if args.update_docs:
        write_docs(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
