"""The `stockpile` command as a user runs it: real subprocesses, the sandbox upstream."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.prices import upsert_prices
from stockpile.localstack import free_port
from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_worker
from tests.support import FAKE_API_KEY, history

STOCKPILE = [sys.executable, "-m", "stockpile.cli"]


def stockpile(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*STOCKPILE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def stored(session: Session) -> dict[str, int]:
    rows = session.execute(text("SELECT symbol, count(*) FROM financial_data GROUP BY symbol"))
    return {row[0]: row[1] for row in rows}


def test_fetch_stores_recent_prices_on_an_empty_database(
    session: Session, sandbox: SandboxHandle
) -> None:
    result = stockpile("fetch", "IBM", "aapl")
    assert result.returncode == 0, result.stderr
    assert stored(session) == {"IBM": 100, "AAPL": 100}
    assert "IBM: 100 rows written" in result.stdout
    assert "AAPL: 100 rows written" in result.stdout
    jobs = session.execute(text("SELECT symbol, status, source FROM jobs ORDER BY symbol")).all()
    assert [tuple(job) for job in jobs] == [
        ("AAPL", "succeeded", "cli"),
        ("IBM", "succeeded", "cli"),
    ]
    assert FAKE_API_KEY not in result.stdout + result.stderr


def test_fetch_exits_nonzero_with_one_line_per_bad_symbol(
    session: Session, sandbox: SandboxHandle
) -> None:
    result = stockpile("fetch", "IBM", "BAD$", "INVALID")
    assert result.returncode == 1
    assert stored(session) == {"IBM": 100}
    assert "BAD$: invalid symbol" in result.stderr
    assert "INVALID: failed (invalid_symbol)" in result.stderr
    assert "Traceback" not in result.stderr


def test_fetch_waits_for_the_fleet_budget_like_a_worker(
    session: Session, sandbox: SandboxHandle
) -> None:
    sandbox.configure(limits="1/second")
    result = subprocess.run(
        [*STOCKPILE, "fetch", "IBM", "AAPL", "MSFT"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "ALPHAVANTAGE_RATE_LIMITS": "1/second"},
    )
    assert result.returncode == 0, result.stderr
    outcomes = [call.outcome for call in sandbox.stats().calls]
    assert outcomes == ["ok", "ok", "ok"]  # paced by our limiter: no burst reply upstream


@pytest.fixture
def worker() -> Iterator[Process]:
    with celery_worker({}, name="cli") as process:
        yield process


@pytest.mark.e2e
@pytest.mark.usefixtures("worker")
def test_enqueue_wait_shows_progress_until_done_and_fails_for_a_bad_symbol(
    session: Session, sandbox: SandboxHandle
) -> None:
    result = stockpile("enqueue", "IBM", "INVALID", "--wait", "--timeout", "60")
    assert result.returncode == 1
    assert "succeeded" in result.stdout
    assert "IBM: 100 rows written" in result.stdout
    assert "INVALID: failed (invalid_symbol)" in result.stderr
    assert stored(session) == {"IBM": 100}


def test_enqueue_without_wait_creates_jobs_for_the_workers(
    session: Session, sandbox: SandboxHandle
) -> None:
    result = stockpile("enqueue", "IBM", "ibm", "AAPL")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("created") == 2
    queued = session.execute(text("SELECT count(*) FROM jobs WHERE status = 'queued'"))
    assert queued.scalar_one() == 2


def test_export_writes_the_apis_csv_to_a_file_and_to_stdout(
    session: Session, api: httpx.Client, tmp_path: Path
) -> None:
    upsert_prices(session, "IBM", history(300))
    upsert_prices(session, "AAPL", history(200))
    session.commit()
    params = {"start_date": "2000-02-01", "end_date": "2000-06-30"}
    served = api.get("/api/financial_data.csv", params=params).text
    assert served.count("\n") > 100

    target = tmp_path / "prices.csv"
    result = stockpile(
        "export", "--start-date", "2000-02-01", "--end-date", "2000-06-30", "-o", str(target)
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, target.read_text()) == ("", served)

    one = stockpile("export", "ibm")
    assert one.returncode == 0, one.stderr
    assert one.stdout == api.get("/api/financial_data.csv", params={"symbol": "IBM"}).text
    assert one.stdout.count("\n") == 301


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["BAD$"], "invalid symbol 'BAD$'"),
        (["--start-date", "2023-02-30"], "invalid --start-date: '2023-02-30' is not a real date"),
        (["--end-date", "20230101"], "invalid --end-date: '20230101' is not a real date"),
        (["--start-date", "2023-02-02", "--end-date", "2023-02-01"], "after --end-date"),
    ],
)
def test_export_refuses_bad_arguments_in_one_line(
    args: list[str], message: str, tmp_path: Path
) -> None:
    target = tmp_path / "prices.csv"
    result = stockpile("export", *args, "-o", str(target))
    assert result.returncode == 1
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not target.exists()


def test_export_of_an_unknown_symbol_is_the_header_line() -> None:
    result = stockpile("export", "NOPE")
    assert (result.returncode, result.stdout) == (
        0,
        "symbol,date,open_price,high_price,low_price,close_price,volume\n",
    )


def test_export_without_a_database_is_one_line_and_no_file(tmp_path: Path) -> None:
    target = tmp_path / "prices.csv"
    result = subprocess.run(
        [*STOCKPILE, "export", "IBM", "-o", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "DATABASE_URL": f"postgresql+psycopg2://u:p@127.0.0.1:{free_port()}/x"},
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == "stockpile export: cannot reach the database (ConnectionRefusedError)"
    )
    assert result.stdout == ""
    assert not target.exists()
