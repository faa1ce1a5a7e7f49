"""The read API under 16 connections, against its own SQL (pgbench) and a constant endpoint."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import statistics
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import httpx
from starlette.requests import Request

from api.read_pool import ReadPool
from api.routes import prices
from bench.dataset import DataSet
from bench.loadgen import Throughput, run_http_load
from bench.memory import RssSampler, process_tree_cpu
from bench.processes import Process, checkout_label, running_api
from bench.profile import API_PARTS, sampling
from bench.sqlbaseline import CapturingReadPool, Statement, run_sql_load
from bench.stack import Stack

logger = logging.getLogger(__name__)

# Time per run: API/SQL ratio within 1.2 where the database is the bound, and at least
# 70 % of the constant endpoint's rate where the framework is.
SQL_TIME_TARGET = 1.2
FRAMEWORK_SHARE_TARGET = 0.7


@dataclass(frozen=True)
class ReadCase:
    """One request shape: its query string and a direct call of the route with the same values."""

    name: str
    path: str
    params: dict[str, str]
    call: Callable[[ReadPool], Awaitable[object]]

    @property
    def target(self) -> str:
        """The path with its query string."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path


@dataclass(frozen=True)
class ReadResult:
    """The API's figures for one case next to both baselines."""

    case: ReadCase
    body_bytes: int
    statements: int
    api: Throughput
    sql: Throughput
    constant: Throughput
    api_cpu_ms: float
    constant_cpu_ms: float
    api_profile: dict[str, float]
    validated_constant: Throughput
    # Each earlier commit's API (by its label) on the same case in the same slices.
    baselines: dict[str, Throughput] = field(default_factory=dict)
    baseline_cpu_ms: dict[str, float] = field(default_factory=dict)
    # This API's req/s over each earlier commit's, slice by slice (one pair per round).
    round_ratios: dict[str, list[float]] = field(default_factory=dict)

    def versus(self, label: str) -> float | None:
        """API req/s over an earlier commit's API req/s, same case, same run."""
        earlier = self.baselines.get(label)
        if earlier is None or not earlier.rate:
            return None
        return self.api.rate / earlier.rate

    def versus_interval(self, label: str) -> tuple[float, float] | None:
        """The 95 % interval of the ratio to an earlier commit, from its rounds' ratios."""
        return ratio_interval(self.round_ratios.get(label, []))

    @property
    def database_bound(self) -> bool:
        """Whether the SQL alone is slower than the framework's ceiling."""
        return self.sql.rate < self.constant.rate

    @property
    def ratio(self) -> float:
        """API time over SQL time (database bound) or API rate over constant rate."""
        if self.database_bound:
            return self.sql.rate / self.api.rate if self.api.rate else float("inf")
        return self.api.rate / self.constant.rate if self.constant.rate else 0.0

    @property
    def met(self) -> bool:
        """Whether the case meets its target."""
        if self.database_bound:
            return self.ratio <= SQL_TIME_TARGET
        return self.ratio >= FRAMEWORK_SHARE_TARGET


def read_cases(data: DataSet) -> list[ReadCase]:
    """The benchmark's request shapes on the loaded data set."""
    symbol = data.symbol(data.symbols // 2)
    year = data.last_day.year
    month_start, month_end = dt.date(year, 3, 1), dt.date(year, 3, 31)
    year_start, year_end = dt.date(year, 1, 1), dt.date(year, 12, 31)
    # Ten years from mid-month to mid-month: both edge months are partial, the dearer case.
    decade_start, decade_end = dt.date(year - 10, 6, 15), dt.date(year, 6, 14)

    def listing(**values: object) -> Callable[[ReadPool], Awaitable[object]]:
        return lambda reads: prices.read_financial_data(
            request=_request(reads),
            start_date=values.get("start_date"),  # type: ignore[arg-type]
            end_date=values.get("end_date"),  # type: ignore[arg-type]
            symbol=values.get("symbol"),  # type: ignore[arg-type]
            limit=values.get("limit", 5),  # type: ignore[arg-type]
            page=values.get("page", 1),  # type: ignore[arg-type]
        )

    def statistics(start: dt.date, end: dt.date) -> Callable[[ReadPool], Awaitable[object]]:
        return lambda reads: prices.read_statistics(
            request=_request(reads), start_date=start, end_date=end, symbol=symbol
        )

    data_path, stats_path = "/api/financial_data", "/api/statistics"
    return [
        ReadCase(
            "one symbol, one month",
            data_path,
            {
                "symbol": symbol,
                "start_date": str(month_start),
                "end_date": str(month_end),
                "limit": "25",
            },
            listing(symbol=symbol, start_date=month_start, end_date=month_end, limit=25),
        ),
        ReadCase(
            "one symbol, all years, page 1",
            data_path,
            {"symbol": symbol},
            listing(symbol=symbol),
        ),
        ReadCase(
            "one symbol, all years, page 1000",
            data_path,
            {"symbol": symbol, "page": "1000"},
            listing(symbol=symbol, page=1000),
        ),
        ReadCase("no filters, page 1", data_path, {}, listing()),
        ReadCase(
            "statistics, 1 year",
            stats_path,
            {"symbol": symbol, "start_date": str(year_start), "end_date": str(year_end)},
            statistics(year_start, year_end),
        ),
        ReadCase(
            "statistics, 10 years",
            stats_path,
            {"symbol": symbol, "start_date": str(decade_start), "end_date": str(decade_end)},
            statistics(decade_start, decade_end),
        ),
        ReadCase(
            "statistics, 25 years",
            stats_path,
            {"symbol": symbol, "start_date": str(data.first_day), "end_date": str(data.last_day)},
            statistics(data.first_day, data.last_day),
        ),
    ]


def _request(reads: ReadPool) -> Request:
    """A request as the server hands it to a route: its state holds the server's read pool."""
    return Request({"type": "http", "state": {"read_pool": reads}})


def route_statements(database_url: str, case: ReadCase) -> list[Statement]:
    """The SQL the route sends for this case and its values, from a direct call of the route."""

    async def capture() -> list[Statement]:
        reads = CapturingReadPool(database_url)
        try:
            await case.call(reads)
        finally:
            await reads.close()
        return reads.sent

    return asyncio.run(capture())


def run_read(
    stack: Stack,
    database_url: str,
    data: DataSet,
    *,
    seconds: float,
    rounds: int,
    tool: str,
    workers: int,
    sampler: RssSampler,
    only: str | None = None,
    profile: bool = False,
    baselines: Sequence[Path] = (),
) -> list[ReadResult]:
    """Every read case (or those whose name contains `only`) with its baselines.

    Each of the four measurements of a case gets `seconds` in all, in `rounds` interleaved
    slices (the order rotates), so a burst of load from elsewhere hits all of them alike. With
    `profile`, py-spy samples the API during its slices (where its CPU goes). With `baselines`
    (checkouts of earlier commits), each commit's API serves the same database beside this
    one's and is measured in the same slices.
    """
    cases = [case for case in read_cases(data) if only is None or only in case.name]
    results: list[ReadResult] = []
    env = stack.process_env(database_url)
    with ExitStack() as running:
        api, url = running.enter_context(running_api(env, workers=workers))
        earlier: list[tuple[str, Process, str]] = []
        for source in baselines:
            label = checkout_label(source)
            process, earlier_url = running.enter_context(
                running_api(env, workers=workers, source=source, name=f"baseline-api-{label}")
            )
            earlier.append((label, process, earlier_url))
        sampler.watch("API (read benchmark)", api.pid, children=workers > 1)
        for case in cases:
            result = _read_case(
                case,
                url,
                api.pid,
                database_url,
                seconds / rounds,
                rounds,
                tool,
                profile,
                earlier,
            )
            logger.info(
                "%s: API %.0f/s (%.2f ms CPU each), SQL %.0f/s, constant %.0f/s (%.2f ms CPU)",
                case.name,
                result.api.rate,
                result.api_cpu_ms,
                result.sql.rate,
                result.constant.rate,
                result.constant_cpu_ms,
            )
            results.append(result)
        sampler.unwatch("API (read benchmark)")
    return results


def _read_case(
    case: ReadCase,
    url: str,
    pid: int,
    database_url: str,
    slice_seconds: float,
    rounds: int,
    tool: str,
    profile: bool,
    earlier: Sequence[tuple[str, Process, str]],
) -> ReadResult:
    response = httpx.get(url + case.target, timeout=60)
    if response.status_code != 200:
        raise RuntimeError(f"{case.target} answered {response.status_code}: {response.text}")
    size = len(response.content)
    statements = route_statements(database_url, case)
    targets = {
        "api": url + case.target,
        "constant": f"{url}/_bench/constant/{size}",
        "validated constant": f"{url}/_bench/validated_constant/{size}?{urlencode(case.params)}",
    }
    pids = {"api": pid, "constant": pid, "validated constant": pid}
    for label, process, earlier_url in earlier:
        name = f"baseline {label}"
        targets[name], pids[name] = earlier_url + case.target, process.pid
        answer = httpx.get(targets[name], timeout=60)
        if answer.content != response.content:
            raise RuntimeError(f"{case.target}: the baseline {label} answers differently")
    runs: dict[str, list[Throughput]] = {name: [] for name in ["sql", *targets]}
    cpu = dict.fromkeys(targets, 0.0)
    profiles: list[dict[str, float]] = []
    for warm in ["api", *(f"baseline {label}" for label, _, _ in earlier)]:  # caches, pools
        run_http_load(targets[warm], seconds=1, tool=tool)
    for round_ in range(rounds):
        order = list(runs)
        for name in order[round_ % len(order) :] + order[: round_ % len(order)]:
            if name == "sql":
                runs[name].append(run_sql_load(database_url, statements, seconds=slice_seconds))
                continue
            profiling: AbstractContextManager[dict[str, float]] = (
                sampling([pid], API_PARTS, cpu_only=True)
                if profile and name == "api"
                else nullcontext({})
            )
            with profiling as shares:
                before = process_tree_cpu(pids[name])
                runs[name].append(run_http_load(targets[name], seconds=slice_seconds, tool=tool))
                cpu[name] += process_tree_cpu(pids[name]) - before
            if shares:
                profiles.append(shares)
    combined = {name: combine(slices) for name, slices in runs.items()}
    return ReadResult(
        case=case,
        body_bytes=size,
        statements=len(statements),
        api=combined["api"],
        sql=combined["sql"],
        constant=combined["constant"],
        api_cpu_ms=_per_request(cpu["api"], combined["api"]),
        constant_cpu_ms=_per_request(cpu["constant"], combined["constant"]),
        api_profile={
            part: statistics.fmean(shares.get(part, 0.0) for shares in profiles)
            for part in (profiles[0] if profiles else {})
        },
        validated_constant=combined["validated constant"],
        baselines={label: combined[f"baseline {label}"] for label, _, _ in earlier},
        baseline_cpu_ms={
            label: _per_request(cpu[f"baseline {label}"], combined[f"baseline {label}"])
            for label, _, _ in earlier
        },
        round_ratios={
            label: [
                ours.rate / theirs.rate
                for ours, theirs in zip(runs["api"], runs[f"baseline {label}"], strict=True)
                if theirs.rate
            ]
            for label, _, _ in earlier
        },
    )


# Student's t, two-sided 95 %, by degrees of freedom (rounds - 1); the normal value beyond.
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23}


def ratio_interval(ratios: Sequence[float]) -> tuple[float, float] | None:
    """A 95 % confidence interval of a speed ratio from paired per-round ratios (t on logs).

    The machine's load moves every slice of a round alike, much less so the ratio of two slices
    of one round: when the interval holds 1, the run cannot tell the two commits apart.
    """
    if len(ratios) < 2:
        return None
    logs = [math.log(ratio) for ratio in ratios]
    centre = statistics.fmean(logs)
    half = _T95.get(len(logs) - 1, 1.96) * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(centre - half), math.exp(centre + half)


def combine(slices: list[Throughput]) -> Throughput:
    """One figure from several slices: totals, and the median slice's percentiles."""
    return Throughput(
        requests=sum(run.requests for run in slices),
        errors=sum(run.errors for run in slices),
        seconds=sum(run.seconds for run in slices),
        p50_ms=statistics.median(run.p50_ms for run in slices),
        p99_ms=statistics.median(run.p99_ms for run in slices),
    )


def _per_request(cpu_seconds: float, run: Throughput) -> float:
    """CPU milliseconds per request: unlike req/s, barely moved by load from elsewhere."""
    return cpu_seconds * 1000 / run.requests if run.requests else 0.0
