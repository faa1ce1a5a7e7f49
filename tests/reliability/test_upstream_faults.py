"""Every kind of broken AlphaVantage answer, through a real worker: the right end state, no crash.

Each case scripts the sandbox for its own symbol, and all run at once on one worker whose client
timeout is 1 s. The daily-limit reply that echoes the key runs last: it pauses the whole fleet.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, text

from shared.upstream.client import AlphaVantageClient
from shared.upstream.errors import MalformedRow, UpstreamTimeout
from stockpile.sandbox.server import SandboxHandle
from tests.processes import celery_beat, celery_worker
from tests.reliability.harness import (
    create_jobs,
    enter_together,
    job_rows,
    wait_all_finished,
)
from tests.support import API_TOKEN, FAKE_API_KEY, wait_until

CLIENT_TIMEOUT_SECONDS = 1.0
SLOW_SECONDS = 3.0  # a 'slow' answer or a 'slow_body' trickle takes this long
WORKER_ENV = {"ALPHAVANTAGE_TIMEOUT_SECONDS": str(CLIENT_TIMEOUT_SECONDS)}


@dataclass(frozen=True, slots=True)
class Case:
    """A scripted fault and the job it must leave behind."""

    symbol: str
    script: tuple[str, ...]
    status: str
    code: str | None
    attempts: frozenset[int]


CASES = (
    # Transient faults that persist: retried until the attempt cap (3 in the test settings).
    Case("TMOUT", ("slow",) * 3, "failed", "upstream_error", frozenset({3})),
    Case("ERRFIVE", ("http_500",) * 3, "failed", "upstream_error", frozenset({3})),
    Case("TRUNCJ", ("truncated",) * 3, "failed", "bad_response", frozenset({3})),
    Case("HTMLPAGE", ("html",) * 3, "failed", "bad_response", frozenset({3})),
    Case("EMPTYJ", ("empty",) * 3, "failed", "bad_response", frozenset({3})),
    # Transient faults that pass: the retry succeeds.
    Case("TMOUTOK", ("slow",), "succeeded", None, frozenset({2})),
    Case("GATEWAY", ("html_502",), "succeeded", None, frozenset({2})),
    # A throttle reply spends no attempt; the fleet cools down 2 s, then the job runs.
    Case("BURSTOK", ("burst_limit",), "succeeded", None, frozenset({1})),
    # A body trickled past the timeout, though every piece arrives within it: cut, then retried.
    Case("DRIP", ("slow_body",), "succeeded", None, frozenset({2})),
    # A row with a non-numeric price: the same answer would come back, so it fails at once.
    Case("BADNUM", ("bad_number",), "failed", "bad_response", frozenset({1})),
)


@pytest.mark.e2e
def test_upstream_faults_end_in_the_right_state_without_crashing_the_worker(
    engine: Engine, sandbox: SandboxHandle
) -> None:
    sandbox.configure(slow_seconds=SLOW_SECONDS)
    for case in CASES:
        sandbox.script_faults(case.script, symbol=case.symbol)
    with ExitStack() as stack:
        worker, _ = enter_together(
            stack,
            celery_worker(WORKER_ENV, name="faults", concurrency=4),
            celery_beat(WORKER_ENV, name="faults-beat"),
        )
        children = {child.pid for child in worker.children()}
        create_jobs(engine, [case.symbol for case in CASES])
        rows = {row.symbol: row for row in wait_all_finished(engine, len(CASES), timeout=120)}
        for case in CASES:
            row = rows[case.symbol]
            assert (row.status, row.error_code) == (case.status, case.code), row
            assert row.attempts in case.attempts, row

        # Last: AlphaVantage's daily-limit reply quoting the key pauses every call for an hour.
        sandbox.configure(echo_key_in_daily_limit=True)
        sandbox.script_faults(["daily_limit"], symbol="ECHO")
        before = datetime.now(UTC)
        (echo_id,) = create_jobs(engine, ["ECHO"])
        echo = wait_until(
            lambda: next((r for r in job_rows(engine) if r.id == echo_id and r.detail), None),
            timeout=60,
            what="the throttled job back in the queue",
        )
        # The same worker, the same pool: no fault crashed a process or raised out of a task.
        assert worker.popen.poll() is None
        assert {child.pid for child in worker.children()} == children
        log = worker.log()
    assert (echo.status, echo.attempts, echo.error_code) == ("queued", 0, None), echo
    assert echo.detail is not None
    assert "daily quota" in echo.detail
    assert FAKE_API_KEY not in echo.detail
    with engine.connect() as conn:
        not_before = conn.execute(
            text("SELECT not_before FROM jobs WHERE id = :id"), {"id": echo_id}
        ).scalar_one()
    assert timedelta(minutes=59) < not_before - before < timedelta(minutes=61)
    echoed = [call for call in sandbox.stats().calls if call.symbol == "ECHO"]
    assert [call.outcome.value for call in echoed] == ["daily_limit"]

    assert "raised unexpected" not in log
    assert "Traceback" not in log
    assert FAKE_API_KEY not in log
    assert API_TOKEN not in log


def _client(sandbox: SandboxHandle, timeout: float) -> AlphaVantageClient:
    return AlphaVantageClient(
        base_url=sandbox.base_url, api_key=SecretStr(FAKE_API_KEY), timeout=timeout
    )


def test_a_non_numeric_price_rejects_the_whole_answer(sandbox: SandboxHandle) -> None:
    sandbox.script_faults(["bad_number"], symbol="IBM")
    with _client(sandbox, timeout=10) as client:
        with pytest.raises(MalformedRow) as caught:
            client.fetch_daily("IBM")
        assert len(client.fetch_daily("IBM").bars) == 100  # the next answer is whole again
    assert "1. open 'N/A' is not a number" in caught.value.message


def test_a_body_trickled_past_the_timeout_is_cut_at_the_timeout(sandbox: SandboxHandle) -> None:
    trickle_seconds = 10 * CLIENT_TIMEOUT_SECONDS  # the whole body would take this long
    sandbox.configure(slow_seconds=trickle_seconds)
    sandbox.script_faults(["slow_body"], symbol="IBM")
    started = time.monotonic()
    with _client(sandbox, timeout=CLIENT_TIMEOUT_SECONDS) as client:
        with pytest.raises(UpstreamTimeout) as caught:
            client.fetch_daily("IBM")
        # Cut long before the trickle could end (however slowly a loaded machine runs this).
        assert time.monotonic() - started < trickle_seconds / 2
        assert len(client.fetch_daily("IBM").bars) == 100  # the cut connection is not reused
    message = caught.value.message
    assert message.startswith(
        f"AlphaVantage did not answer 'IBM' within {CLIENT_TIMEOUT_SECONDS:g} s"
    )
    assert "still arriving" in message
    assert FAKE_API_KEY not in message
    assert caught.value.__context__ is None
