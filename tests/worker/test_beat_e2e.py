"""Beat end to end: real beat processes and a real worker keep the tracked symbols current."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.core.market_calendar import last_completed_trading_day
from shared.core.models import utcnow
from shared.domain.tracking import track
from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_beat, celery_worker
from tests.support import wait_until

pytestmark = pytest.mark.e2e

# Beat checks every 2 s instead of every minute; a lagging symbol could be retried after 1 s, so
# only current data (or a job in flight, or parking) can explain the absence of a new job.
ENV = {"REFRESH_CHECK_INTERVAL_SECONDS": "2", "REFRESH_MIN_INTERVAL_SECONDS": "1"}
TICK_DONE = re.compile(r"Task stockpile\.enqueue_due_refreshes\[[^\]]+\] succeeded in [^:]+: (\d+)")
TICK_SENT = "Sending due task enqueue-due-refreshes"


@pytest.fixture(scope="module")
def worker() -> Iterator[Process]:
    # Three processes: a slow upstream call must not starve beat's ticks.
    with celery_worker(ENV, name="beat-e2e", concurrency=3) as process:
        yield process


def ticks_done(worker: Process, since: int) -> list[int]:
    """Jobs created by each enqueue tick the worker finished after log offset `since`."""
    return [int(created) for created in TICK_DONE.findall(worker.log()[since:])]


def wait_for_ticks(worker: Process, count: int) -> None:
    """Wait until the worker finishes `count` more enqueue ticks."""
    start = len(worker.log())
    wait_until(
        lambda: len(ticks_done(worker, start)) >= count,
        timeout=60,
        what=f"{count} enqueue ticks",
    )


def jobs(session: Session) -> list[tuple[str, str, str]]:
    rows = session.execute(text("SELECT symbol, status, source FROM jobs ORDER BY symbol")).all()
    return [(row.symbol, row.status, row.source) for row in rows]


def all_finished(session: Session, count: int) -> bool:
    session.rollback()  # a fresh snapshot for each poll
    found = jobs(session)
    return len(found) == count and all(status in {"succeeded", "failed"} for _, status, _ in found)


def outcomes(sandbox: SandboxHandle) -> dict[str, set[str]]:
    """The sandbox's answers per symbol.

    Sets, not lists: a job whose first run overran its time limit on a loaded machine is run
    again after its lease, which is the job runner's business, not beat's.
    """
    found: dict[str, set[str]] = {}
    for call in sandbox.stats().calls:
        found.setdefault(call.symbol or "", set()).add(call.outcome)
    return found


def stored_rows(api: httpx.Client, symbol: str) -> int:
    body = api.get("/api/financial_data", params={"symbol": symbol, "limit": 1}).json()
    return int(body["pagination"]["count"])


def test_beat_refreshes_tracked_symbols_without_any_request(
    worker: Process, api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    track(session, "DELISTED")  # the sandbox answers it with AlphaVantage's invalid-symbol reply
    session.commit()
    log_start = len(worker.log())
    with celery_beat(ENV):
        wait_until(
            lambda: stored_rows(api, "IBM") and stored_rows(api, "AAPL"),
            timeout=120,
            what="IBM and AAPL prices via the API",
        )
        wait_until(lambda: all_finished(session, 3), timeout=60, what="three finished jobs")
        # Later ticks find IBM and AAPL current and DELISTED parked: they create nothing.
        wait_for_ticks(worker, 3)
    assert jobs(session) == [
        ("AAPL", "succeeded", "beat"),
        ("DELISTED", "failed", "beat"),
        ("IBM", "succeeded", "beat"),
    ]
    assert sum(ticks_done(worker, log_start)) == 3
    assert outcomes(sandbox) == {"AAPL": {"ok"}, "DELISTED": {"invalid_symbol"}, "IBM": {"ok"}}
    assert (stored_rows(api, "IBM"), stored_rows(api, "AAPL")) == (100, 100)

    symbols = {item["symbol"]: item for item in api.get("/symbols").json()["data"]}
    current = last_completed_trading_day(utcnow()).isoformat()
    for symbol in ("AAPL", "IBM"):
        assert symbols[symbol]["last_date"] == current
        assert symbols[symbol]["rows"] == 100
        assert symbols[symbol]["last_refreshed_at"]
        assert symbols[symbol]["failure"] is None
    failure = symbols["DELISTED"]["failure"]
    assert failure["code"] == "invalid_symbol"
    retry_at = datetime.strptime(failure["retry_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert timedelta(days=6, hours=23) < retry_at - utcnow() <= timedelta(days=7)
    assert symbols["DELISTED"]["rows"] == 0


def test_two_beats_at_once_create_one_job_per_symbol(
    worker: Process, sandbox: SandboxHandle, session: Session
) -> None:
    # IBM's call takes 3 s, so its job stays in flight across several ticks of both beats.
    sandbox.script_faults(["slow"], symbol="IBM")
    log_start = len(worker.log())
    # The second beat starts with an empty schedule file, so its first tick runs at once, like
    # a restarted beat's, while the first beat's jobs are in flight or already done.
    with celery_beat(ENV, name="beat-a") as first, celery_beat(ENV, name="beat-b") as second:
        wait_until(lambda: all_finished(session, 2), timeout=120, what="two finished jobs")
        wait_until(
            lambda: first.log().count(TICK_SENT) >= 3 and second.log().count(TICK_SENT) >= 3,
            timeout=60,
            what="three ticks from each beat",
        )
        wait_for_ticks(worker, 2)
    assert jobs(session) == [("AAPL", "succeeded", "beat"), ("IBM", "succeeded", "beat")]
    assert sum(ticks_done(worker, log_start)) == 2
    assert outcomes(sandbox) == {"AAPL": {"ok"}, "IBM": {"ok"}}
