"""The `stockpile` command: fetch, enqueue, export, the sandbox, the local stack, migrate."""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from shared.core.db import session_scope
from shared.core.logs import configure_logging
from shared.core.models import Job, JobStatus, OutputSize
from shared.core.settings import get_settings
from shared.core.symbols import normalize_symbol
from shared.domain.audit import audited_call_times
from shared.domain.jobs.records import create_job, get_job
from shared.domain.refresh import Outcome, RunPolicy, run_job
from shared.upstream.factory import Upstream, make_upstream

app = typer.Typer(
    help="Stockpile: a local, queryable copy of daily stock prices from AlphaVantage.",
    no_args_is_help=True,
    add_completion=False,
)
out = Console()
err = Console(stderr=True)

OutputSizeOption = Annotated[
    Optional[OutputSize],  # noqa: UP045 (typer needs Optional on Python 3.11)
    typer.Option(help="compact (latest 100 days) or full (20+ years, premium keys)"),
]
# `stockpile fetch` waits in-process for budget up to this long; beyond, workers take over.
FETCH_MAX_WAIT_SECONDS = 120.0
FINISHED = {JobStatus.SUCCEEDED, JobStatus.FAILED}


def _symbols(raw: Sequence[str]) -> tuple[list[str], bool]:
    symbols, ok = [], True
    for item in raw:
        try:
            symbols.append(normalize_symbol(item))
        except ValueError as exc:
            err.print(f"[red]{item}[/]: invalid symbol, {exc}")
            ok = False
    return list(dict.fromkeys(symbols)), ok


def _describe(job: Job) -> str:
    if job.status == JobStatus.SUCCEEDED:
        return f"[green]{job.symbol}[/]: {job.rows_written} rows written. {job.detail or ''}"
    if job.status == JobStatus.FAILED:
        return f"[red]{job.symbol}[/]: failed ({job.error_code}): {job.error_message}"
    return f"[yellow]{job.symbol}[/]: still {job.status}. {job.detail or ''}"


def _wait_for(job_id: uuid.UUID, timeout: float) -> Job:
    deadline = time.monotonic() + timeout
    while True:
        with session_scope() as session:
            job = get_job(session, job_id)
        assert job is not None
        if job.status in FINISHED or time.monotonic() > deadline:
            return job
        time.sleep(0.5)


@app.command()
def fetch(
    symbols: Annotated[list[str], typer.Argument(help="Ticker symbols, e.g. IBM AAPL")],
    outputsize: OutputSizeOption = None,
) -> None:
    """Refresh symbols now, in this process, through the same code path as a worker."""
    settings = get_settings()
    configure_logging(settings)
    wanted, all_ok = _symbols(symbols)
    upstream = make_upstream(settings, audited_call_times)
    worker = f"cli:{uuid.uuid4().hex[:8]}"
    try:
        for symbol in wanted:
            with session_scope() as session:
                created = create_job(session, symbol, outputsize=outputsize, source="cli")
            job = created.job
            if not created.created:
                out.print(f"{symbol}: a job is already in flight ({job.id}); waiting for it")
                job = _wait_for(job.id, FETCH_MAX_WAIT_SECONDS)
            else:
                job = _run_until_settled(
                    job.id, upstream, RunPolicy.from_settings(settings), worker
                )
            (out if job.status == JobStatus.SUCCEEDED else err).print(_describe(job))
            all_ok &= job.status == JobStatus.SUCCEEDED
    finally:
        upstream.close()
    raise typer.Exit(0 if all_ok else 1)


def _run_until_settled(
    job_id: uuid.UUID, upstream: Upstream, policy: RunPolicy, worker: str
) -> Job:
    waited = 0.0
    while True:
        result = run_job(job_id, upstream=upstream, policy=policy, worker=worker)
        if result.outcome is not Outcome.REQUEUED or result.retry_in is None:
            break
        if waited + result.retry_in > FETCH_MAX_WAIT_SECONDS:
            break  # the job stays queued; workers (or a later fetch) finish it
        time.sleep(result.retry_in)
        waited += result.retry_in
    with session_scope() as session:
        job = get_job(session, job_id)
    assert job is not None
    return job


@app.command()
def enqueue(
    symbols: Annotated[list[str], typer.Argument(help="Ticker symbols, e.g. IBM AAPL")],
    outputsize: OutputSizeOption = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Show progress until every job finishes")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many seconds")] = 3600,
) -> None:
    """Create refresh jobs for the workers, as POST /jobs does."""
    from shared.domain.queue import submit_job

    settings = get_settings()
    configure_logging(settings)
    wanted, all_ok = _symbols(symbols)
    job_ids: list[uuid.UUID] = []
    for symbol in wanted:
        with session_scope() as session:
            result = submit_job(session, symbol, outputsize=outputsize, source="cli")
        state = "created" if result.created else "already in flight"
        out.print(f"{symbol}: job {result.job.id} {state}")
        job_ids.append(result.job.id)
    if wait and job_ids:
        jobs = _watch(job_ids, timeout)
        for job in jobs:
            (out if job.status == JobStatus.SUCCEEDED else err).print(_describe(job))
        all_ok &= all(job.status == JobStatus.SUCCEEDED for job in jobs)
    raise typer.Exit(0 if all_ok else 1)


_STATUS_STYLE = {
    JobStatus.QUEUED: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
}


def _progress_table(jobs: Sequence[Job]) -> Table:
    table = Table("symbol", "status", "attempts", "rows", "detail", title="Stockpile jobs")
    for job in jobs:
        style = _STATUS_STYLE[JobStatus(job.status)]
        detail = job.error_message if job.error_code else (job.detail or "")
        table.add_row(
            job.symbol,
            f"[{style}]{job.status}[/]",
            str(job.attempts),
            "" if job.rows_written is None else str(job.rows_written),
            detail,
        )
    return table


def _watch(job_ids: Sequence[uuid.UUID], timeout: float) -> list[Job]:
    deadline = time.monotonic() + timeout
    with Live(console=out, refresh_per_second=4, transient=False) as live:
        while True:
            with session_scope() as session:
                jobs = [job for job_id in job_ids if (job := get_job(session, job_id))]
            live.update(_progress_table(jobs))
            if all(job.status in FINISHED for job in jobs) or time.monotonic() > deadline:
                return jobs
            time.sleep(0.5)


@app.command()
def export(
    symbol: Annotated[
        Optional[str],  # noqa: UP045 (typer needs Optional on Python 3.11)
        typer.Argument(help="Ticker, case-insensitive; every symbol when left out"),
    ] = None,
    start_date: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--start-date", help="First day, YYYY-MM-DD, inclusive"),
    ] = None,
    end_date: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--end-date", help="Last day, YYYY-MM-DD, inclusive"),
    ] = None,
    output: Annotated[
        Optional[Path],  # noqa: UP045
        typer.Option("--output", "-o", help="Write the CSV to this file instead of stdout"),
    ] = None,
) -> None:
    """The stored prices as CSV, exactly as GET /api/financial_data.csv answers them."""
    from stockpile.export import ExportError, export_csv, price_filter

    configure_logging(get_settings())
    try:
        filters = price_filter(symbol, start_date, end_date)
        export_csv(get_settings().require_database_url(), filters, output)
    except ExportError as exc:
        err.print(f"[red]stockpile export:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8765,
    host: Annotated[str, typer.Option(help="Address to listen on")] = "127.0.0.1",
    limits: Annotated[
        str, typer.Option(help="Own limits like '1/second,25/day', or 'off'")
    ] = "1/second,25/day",
    premium: Annotated[bool, typer.Option(help="Allow outputsize=full")] = False,
) -> None:
    """Run the sandbox AlphaVantage server (no key, no internet needed)."""
    from stockpile.sandbox.config import SandboxConfig
    from stockpile.sandbox.server import serve

    configure_logging(get_settings())
    serve(host, port, SandboxConfig(limits=None if limits == "off" else limits, premium=premium))


@app.command()
def dev(
    api_port: Annotated[int, typer.Option(help="Port of the API")] = 8000,
    flower_port: Annotated[int, typer.Option(help="Port of Flower")] = 5555,
    sandbox_port: Annotated[
        int, typer.Option(help="Port of the sandbox AlphaVantage (run when no key is set)")
    ] = 8765,
    redis_port: Annotated[
        Optional[int],  # noqa: UP045 (typer needs Optional on Python 3.11)
        typer.Option(help="Port of the embedded Redis  [default: 6380, or a free one if taken]"),
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker pool processes")] = 2,
    data_dir: Annotated[
        Path, typer.Option(help="Folder for the embedded servers' data and generated secrets")
    ] = Path(".stockpile"),
) -> None:
    """Run the whole stack here: PostgreSQL, Redis, API, worker, beat and Flower."""
    from stockpile.devstack.options import DevError, DevOptions
    from stockpile.devstack.run import run_dev

    settings = get_settings()
    configure_logging(settings)
    options = DevOptions(
        data_dir=data_dir,
        api_port=api_port,
        flower_port=flower_port,
        sandbox_port=sandbox_port,
        redis_port=redis_port,
        concurrency=concurrency,
    )
    try:
        status = run_dev(settings, options, base_env=os.environ, output=sys.stdout)
    except DevError as exc:
        err.print(f"[red]stockpile dev:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from None
    raise typer.Exit(status)


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    from stockpile.migrations import upgrade_head

    upgrade_head(get_settings().require_database_url())
    out.print("database schema is at head")


def main() -> None:
    """Entry point of the console script."""
    app()


if __name__ == "__main__":
    main()
