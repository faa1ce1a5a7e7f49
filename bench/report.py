"""The results as Markdown tables, printed by every run and written into docs/ on request."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import ROLES
from bench.dataset import DataSet
from bench.export import EXPORT_SHARE_TARGET, RSS_GROWTH_TARGET, ExportReport
from bench.ingest import UPSERT_SHARE_TARGET, IngestResult
from bench.loadgen import Throughput
from bench.pipeline import NOOP_SHARE_TARGET, PipelineResult
from bench.readapi import FRAMEWORK_SHARE_TARGET, SQL_TIME_TARGET, ReadResult
from bench.statistics_sql import StatisticsSqlResult

START_MARKER = "<!-- bench:results:start -->"
END_MARKER = "<!-- bench:results:end -->"


@dataclass
class Report:
    """Everything one run measured, and how it was run."""

    machine: list[str]
    data: DataSet | None = None
    read: list[ReadResult] = field(default_factory=list)
    ingest: IngestResult | None = None
    pipeline: PipelineResult | None = None
    memory: dict[str, int] = field(default_factory=dict)
    statistics_sql: list[StatisticsSqlResult] = field(default_factory=list)
    export: ExportReport | None = None

    def markdown(self) -> str:
        """The report as Markdown."""
        lines = [*self.machine, ""]
        if self.read:
            lines += _read_table(self.read, self.data)
            for label in dict.fromkeys(label for r in self.read for label in r.baselines):
                lines += _baseline_table(self.read, label)
            if any(result.api_profile for result in self.read):
                lines += _profile_table(self.read)
        if self.statistics_sql:
            lines += _statistics_sql_table(self.statistics_sql)
        if self.export:
            lines += _export_table(self.export)
        if self.ingest is not None:
            lines += _ingest_table(self.ingest)
        if self.pipeline is not None:
            lines += _pipeline_table(self.pipeline)
        if self.memory:
            lines += _memory_table(self.memory)
        return "\n".join(lines).rstrip() + "\n"


def _met(met: bool) -> str:
    return "yes" if met else "**no**"


def _latency(run: Throughput) -> str:
    return f"{run.p50_ms:.1f} / {run.p99_ms:.1f}"


def _read_table(results: list[ReadResult], data: DataSet | None) -> list[str]:
    lines = ["### Read API: 16 connections", ""]
    if data is not None:
        lines += [
            f"Data set: {data.symbols:,} symbols x {data.rows // data.symbols:,} trading days"
            f" ({data.first_day} to {data.last_day}) = {data.rows:,} rows,"
            f" inserted {LAYOUT_NAMES[data.layout]}, loaded in {data.seconds:.0f} s.",
            "",
        ]
    lines += [
        "| case | API req/s | p50 / p99 ms | API CPU ms/req | SQL tx/s | p50 / p99 ms"
        " | constant req/s | constant CPU ms/req | validated constant req/s | bound by | ratio"
        " | target | met |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|---|---|",
    ]
    for result in results:
        if result.database_bound:
            bound, target = "database", f"SQL/API time <= {SQL_TIME_TARGET:.1f}"
        else:
            bound, target = "framework", f"API/constant >= {FRAMEWORK_SHARE_TARGET:.2f}"
        errors = f" ({result.api.errors} errors)" if result.api.errors else ""
        lines.append(
            f"| {result.case.name} | {result.api.rate:,.0f}{errors} | {_latency(result.api)}"
            f" | {result.api_cpu_ms:.2f} | {result.sql.rate:,.0f} | {_latency(result.sql)}"
            f" | {result.constant.rate:,.0f} | {result.constant_cpu_ms:.2f}"
            f" | {result.validated_constant.rate:,.0f} | {bound}"
            f" | {result.ratio:.2f} | {target} | {_met(result.met)} |"
        )
    return [*lines, ""]


LAYOUT_NAMES = {
    "day": "day by day across all symbols (as daily refreshes leave them)",
    "symbol": "symbol by symbol (each history in one piece)",
}


def _baseline_table(results: list[ReadResult], label: str) -> list[str]:
    lines = [
        f"The same cases on commit {label}'s API (`--baseline`: its checkout serving the same"
        " database beside this one, measured in the same interleaved slices; answers checked"
        " byte-identical first):",
        "",
        f"| case | this commit req/s | CPU ms/req | {label} req/s | CPU ms/req"
        f" | this / {label} | 95 % interval (per round) | slower |",
        "|---|--:|--:|--:|--:|--:|--:|---|",
    ]
    for result in results:
        ratio = result.versus(label)
        if ratio is None:
            continue
        interval = result.versus_interval(label)
        lines.append(
            f"| {result.case.name} | {result.api.rate:,.0f} | {result.api_cpu_ms:.2f}"
            f" | {result.baselines[label].rate:,.0f} | {result.baseline_cpu_ms[label]:.2f}"
            f" | {ratio:.2f} | {_interval(interval)} | {_slower(ratio, interval)} |"
        )
    return [
        *lines,
        "",
        "Slower: **yes** when the whole interval is below 1; *within noise* when it holds 1 (the"
        " run cannot tell the two commits apart); no when the whole interval is at or above 1.",
        "",
    ]


def _interval(interval: tuple[float, float] | None) -> str:
    return "" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def _slower(ratio: float, interval: tuple[float, float] | None) -> str:
    if interval is None:  # one round: the ratio alone
        return "**yes**" if ratio < 1.0 else "no"
    low, high = interval
    if high < 1.0:
        return "**yes**"
    return "*within noise*" if low < 1.0 else "no"


def _statistics_sql_table(results: list[StatisticsSqlResult]) -> list[str]:
    lines = [
        "### Statistics: the SQL alone, two ways to avoid visiting every row",
        "",
        "One client (`pgbench -c 1 -M prepared`) for the latency, 16 clients for the rate;"
        " EXPLAIN (ANALYZE, BUFFERS) of one run for the pages touched.",
        "",
        "| range | statement | 1 client mean ms | 16 clients tx/s | EXPLAIN ms | buffers |",
        "|---|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {result.range_name} | {result.way} | {result.single_ms:.3f}"
        f" | {result.concurrent.rate:,.0f} | {result.explain_ms:.3f} | {result.buffers:,} |"
        for result in results
    ]
    return [*lines, ""]


def _export_table(report: ExportReport) -> list[str]:
    lines = [
        "### Bulk export: `GET /api/financial_data.csv` against psql's `COPY ... TO STDOUT`",
        "",
        "One request at a time, each a client process (curl; psql) whose whole output the"
        " benchmark reads from a pipe, timed from its start to its end; the same SELECT, and"
        " outputs of the same size; alternating, median time of each.",
        "",
        "| export | rows | bytes | API s | API rows/s | psql s | psql rows/s | API / psql"
        " | target | met |",
        "|---|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    lines += [
        f"| {case.name} | {case.rows:,} | {case.bytes:,} | {case.api_seconds:.3f}"
        f" | {case.api_rate:,.0f} | {case.psql_seconds:.3f} | {case.psql_rate:,.0f}"
        f" | {case.ratio:.2f} | >= {EXPORT_SHARE_TARGET:.2f} | {_met(case.met)} |"
        for case in report.cases
    ]
    lines += [
        "",
        f"API RSS during the full export: {report.rss_before / 2**20:,.0f} MiB before,"
        f" {report.rss_peak / 2**20:,.0f} MiB at most (sampled every 0.05 s), growth"
        f" {report.rss_growth / 2**20:,.1f} MiB (target < {RSS_GROWTH_TARGET / 2**20:.0f} MiB:"
        f" {_met(report.rss_growth < RSS_GROWTH_TARGET)}).",
        "",
    ]
    return lines


def _profile_table(results: list[ReadResult]) -> list[str]:
    parts = list(next(result.api_profile for result in results if result.api_profile))
    lines = [
        "API CPU by part of the stack (py-spy, samples of the thread holding the GIL):",
        "",
        "| part | " + " | ".join(result.case.name for result in results) + " |",
        "|---|" + "--:|" * len(results),
    ]
    for part in parts:
        shares = [f"{result.api_profile.get(part, 0.0):.0%}" for result in results]
        lines.append(f"| {part} | " + " | ".join(shares) + " |")
    return [*lines, ""]


def _ingest_table(result: IngestResult) -> list[str]:
    return [
        f"### Ingestion: {result.histories} full histories, {result.rows:,} rows",
        "",
        "| way in | rows/s | vs COPY | target | met |",
        "|---|--:|--:|---|---|",
        f"| upsert_prices, one statement and commit per history | {result.upsert_rate:,.0f}"
        f" | {result.ratio:.2f} | >= {UPSERT_SHARE_TARGET:.2f} |"
        f" {_met(result.ratio >= UPSERT_SHARE_TARGET)} |",
        f"| COPY into an empty copy of the table | {result.copy_rate:,.0f} | 1.00 | | |",
        f"| upsert_prices again, unchanged | {result.reupsert_rate:,.0f}"
        f" | {result.reupsert_rate / result.copy_rate:.2f} | writes nothing"
        f" | {_met(result.reupsert_written == 0 and result.reupsert_touched_rows == 0)}"
        f" ({result.reupsert_written} written, {result.reupsert_touched_rows} rows touched) |",
        "",
    ]


def _pipeline_table(result: PipelineResult) -> list[str]:
    return [
        f"### Job pipeline: {result.jobs:,} jobs, one worker with 2 processes",
        "",
        "| measure | per second | vs no-op | target | met |",
        "|---|--:|--:|---|---|",
        f"| jobs, first POST to last `succeeded` (POSTs took {result.posting_seconds:.1f} s)"
        f" | {result.pipeline_rate:,.1f} | {result.ratio:.2f} | >= {NOOP_SHARE_TARGET:.2f}"
        f" | {_met(result.met)} |",
        "| no-op Celery task, same broker and worker settings (before / after the jobs:"
        f" {result.noop_rates[0]:,.0f} / {result.noop_rates[1]:,.0f})"
        f" | {result.noop_rate:,.1f} | 1.00 | | |",
        f"| sandbox fetches alone ({result.upstream_calls} new symbols, 2 threads, no database)"
        f" | {result.upstream_rate:,.1f} | {result.upstream_rate / result.noop_rate:.2f} | | |",
        "",
        *_cpu_table(result),
        *_worker_profile(result.worker_profile),
    ]


def _cpu_table(result: PipelineResult) -> list[str]:
    jobs, noops = result.jobs, 2 * result.jobs
    job_total = sum(result.pipeline_cpu.values())
    noop_total = sum(result.noop_cpu.values())
    lines = [
        "CPU per job and per no-op task, every process on the machine by role (psutil; two cores"
        " allow 2,000 ms of CPU per second, so a rate can never exceed 2,000 / total):",
        "",
        "| process | job pipeline ms/job | no-op ms/task |",
        "|---|--:|--:|",
    ]
    lines += [
        f"| {role} | {result.pipeline_cpu[role] * 1000 / jobs:.2f}"
        f" | {result.noop_cpu[role] * 1000 / noops:.2f} |"
        for role in ROLES
    ]
    lines.append(
        f"| **total** | **{job_total * 1000 / jobs:.2f}** | **{noop_total * 1000 / noops:.2f}** |"
    )
    return [*lines, ""]


def _worker_profile(shares: dict[str, float]) -> list[str]:
    if not shares:
        return []
    lines = [
        "Worker pool processes' wall-clock time while the jobs ran (py-spy, idle included):",
        "",
        "| part | share |",
        "|---|--:|",
    ]
    lines += [f"| {part} | {share:.0%} |" for part, share in shares.items()]
    return [*lines, ""]


def _memory_table(peaks: dict[str, int]) -> list[str]:
    lines = ["### Peak RSS (sampled every 0.2 s)", "", "| process | MiB |", "|---|--:|"]
    lines += [f"| {role} | {rss / 2**20:,.0f} |" for role, rss in sorted(peaks.items())]
    return [*lines, ""]


def write_into(path: Path, markdown: str) -> None:
    """Replace the results between the markers in `path` (other sections stay as they are)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{START_MARKER}\n{markdown}{END_MARKER}"
    pattern = re.compile(re.escape(START_MARKER) + ".*?" + re.escape(END_MARKER), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = f"{text.rstrip()}\n\n## Latest results\n\n{block}\n".lstrip()
    path.write_text(text, encoding="utf-8")
