"""`python -m bench`: every benchmark (or some) on throwaway servers, then a table of ratios.

python -m bench                      # everything (9-13 minutes on 2 busy cores)
python -m bench --parts read         # one part: read, statistics, export, ingest, pipeline
python -m bench --parts read --only "statistics" --seconds 4
python -m bench --parts read --baseline ../wt-before   # also an earlier commit's API, same run
python -m bench --parts read --baseline ../wt-a --baseline ../wt-b   # several, same slices
python -m bench --update-docs        # also write the table into docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.dataset import load_dataset
from bench.export import run_export
from bench.ingest import run_ingest
from bench.loadgen import find_wrk
from bench.memory import RssSampler
from bench.pipeline import run_pipeline
from bench.readapi import run_read
from bench.report import Report, write_into
from bench.stack import Stack, fresh_database, running_stack
from bench.statistics_sql import run_statistics_sql
from shared.core.settings import get_settings

logger = logging.getLogger("bench")

PARTS = ("read", "statistics", "export", "ingest", "pipeline")
# The parts that run on the read benchmark's data set (loaded once for all of them).
ON_READ_DATA = ("read", "statistics", "export")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated: {','.join(PARTS)}"
    )
    parser.add_argument("--only", help="read cases whose name contains this text")
    parser.add_argument(
        "--seconds", type=float, default=9.0, help="load time per measurement of a read case"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="interleaved slices the --seconds are split into"
    )
    parser.add_argument("--symbols", type=int, default=1000, help="symbols in the read data set")
    parser.add_argument("--years", type=int, default=25, help="years of trading days per symbol")
    parser.add_argument(
        "--layout",
        choices=("day", "symbol"),
        default="day",
        help="read data set inserted day by day across symbols (as daily refreshes leave it)"
        " or symbol by symbol",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        help="a checkout of an earlier commit: its API is measured beside this one's (read part);"
        " repeat for several",
    )
    parser.add_argument("--histories", type=int, default=100, help="full histories to ingest")
    parser.add_argument("--days", type=int, default=6500, help="trading days per history")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs through the pipeline")
    parser.add_argument("--api-workers", type=int, default=1, help="uvicorn --workers for the API")
    parser.add_argument(
        "--load-generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="auto: wrk when installed, else the Python generator (bench/pyload.py)",
    )
    parser.add_argument(
        "--install-wrk",
        action="store_true",
        help="apt-get install wrk first when it is missing (needs root and apt)",
    )
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="throwaway PostgreSQL and Redis even when DATABASE_URL / REDIS_URL are set",
    )
    parser.add_argument(
        "--update-docs", action="store_true", help=f"write the results into {DOCS.name}"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the API (read runs) and the worker (jobs) with py-spy, if installed",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    return args


def _load_generator(choice: str, install: bool) -> str:
    if choice != "auto":
        return choice
    if find_wrk() is None and install:
        _try_install_wrk()
    return "wrk" if find_wrk() is not None else "python"


def _try_install_wrk() -> None:
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        logger.warning("wrk is missing and cannot be installed here; using the Python generator")
        return
    logger.info("installing wrk with apt-get")
    done = subprocess.run(
        [apt, "install", "-y", "-q", "wrk"], capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        logger.warning("apt-get install wrk failed; using the Python generator")


def _machine(stack: Stack, tool: str, args: argparse.Namespace) -> list[str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    engine = create_engine(stack.server_url, poolclass=NullPool)
    with engine.connect() as connection:
        postgres = str(connection.execute(text("SHOW server_version")).scalar_one())
    engine.dispose()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"- When: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC; load average at the start: {load}",
        f"- Machine: {cpu}, {psutil.cpu_count()} CPUs,"
        f" {psutil.virtual_memory().total / 2**30:.0f} GiB RAM; {platform.platform()}",
        f"- Python {platform.python_version()}, PostgreSQL {postgres};"
        f" API: uvicorn --workers {args.api_workers} (uvloop, httptools, no access log);"
        f" load generator: {tool}",
        f"- Command: `{shlex.join(['python', '-m', 'bench', *sys.argv[1:]])}`",
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the chosen parts and print (and optionally store) the table."""
    args = _arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("alembic", "httpx", "stockpile.localstack", "shared"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    tool = _load_generator(args.load_generator, args.install_wrk)
    settings = get_settings()
    began = time.monotonic()
    sampler = RssSampler()
    with (
        running_stack(
            None if args.embedded else settings.database_url,
            None if args.embedded else settings.redis_url,
        ) as stack,
        sampler.running(),
    ):
        report = Report(machine=_machine(stack, tool, args))
        if any(part in args.parts for part in ON_READ_DATA):
            with fresh_database(stack, "read") as url:
                report.data = load_dataset(
                    url,
                    symbols=args.symbols,
                    years=args.years,
                    end_year=dt.date.today().year - 1,
                    layout=args.layout,
                )
                if "read" in args.parts:
                    report.read = run_read(
                        stack,
                        url,
                        report.data,
                        seconds=args.seconds,
                        rounds=args.rounds,
                        tool=tool,
                        workers=args.api_workers,
                        sampler=sampler,
                        only=args.only,
                        profile=args.profile,
                        baselines=args.baseline,
                    )
                if "statistics" in args.parts:
                    report.statistics_sql = run_statistics_sql(
                        url, report.data, seconds=max(2.0, args.seconds / args.rounds)
                    )
                if "export" in args.parts:
                    report.export = run_export(stack, url, report.data, sampler=sampler)
        if "ingest" in args.parts:
            with fresh_database(stack, "ingest") as url:
                report.ingest = run_ingest(
                    url,
                    histories=args.histories,
                    days=args.days,
                    end=dt.date(dt.date.today().year - 1, 12, 31),
                )
        if "pipeline" in args.parts:
            with fresh_database(stack, "pipeline") as url:
                report.pipeline = run_pipeline(
                    stack, url, jobs=args.jobs, sampler=sampler, profile=args.profile
                )
    report.memory = sampler.peaks()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    report.machine.append(
        f"- Took {time.monotonic() - began:.0f} s; load average at the end: {load}"
    )
    markdown = report.markdown()
    print(markdown)
    if args.update_docs:
        write_into(DOCS, markdown)
        logger.info("results written into %s", DOCS)
    met = [result.met for result in report.read]
    met += [case.met for case in report.export.cases] if report.export else []
    met += [part.met for part in (report.ingest, report.pipeline) if part is not None]
    return 1 if args.strict and not all(met) else 0


if __name__ == "__main__":
    sys.exit(main())
