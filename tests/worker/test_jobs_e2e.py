"""Jobs end to end: the API, real Redis, real prefork workers and beat, the sandbox upstream."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.domain.jobs.records import create_job
from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_beat, celery_worker
from tests.support import API_TOKEN, FAKE_API_KEY, wait_until

pytestmark = pytest.mark.e2e

FINISHED = {"succeeded", "failed"}


@pytest.fixture(scope="module")
def worker() -> Iterator[Process]:
    with celery_worker({}, name="e2e") as process:
        yield process


@pytest.fixture(scope="module")
def beat(worker: Process) -> Iterator[Process]:
    with celery_beat({}) as process:
        yield process


def finished_job(api: httpx.Client, job_id: str, timeout: float = 120) -> dict[str, Any]:
    def poll() -> dict[str, Any] | None:
        job: dict[str, Any] = api.get(f"/jobs/{job_id}").json()["data"]
        return job if job["status"] in FINISHED else None

    return wait_until(poll, timeout=timeout, what=f"job {job_id} to finish")


def post(api: httpx.Client, symbol: str, **extra: str) -> str:
    response = api.post(
        "/jobs", json={"symbol": symbol, **extra}, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["data"]["id"])


def calls_for(sandbox: SandboxHandle, symbol: str) -> list[str]:
    return [call.outcome for call in sandbox.stats().calls if call.symbol == symbol]


@pytest.mark.usefixtures("worker")
def test_posted_job_succeeds_and_its_prices_are_readable(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    job = finished_job(api, post(api, "IBM"))
    assert job["status"] == "succeeded", job
    assert job["rows_written"] == 100
    assert job["attempts"] == 1
    assert job["error"] is None
    assert job["started_at"]
    assert job["finished_at"]
    prices = api.get("/api/financial_data", params={"symbol": "IBM", "limit": 1000}).json()
    assert prices["pagination"]["count"] == 100
    assert calls_for(sandbox, "IBM") == ["ok"]
    audit = session.execute(text("SELECT symbol, outcome FROM api_calls")).all()
    assert [tuple(row) for row in audit] == [("IBM", "ok")]


@pytest.mark.usefixtures("worker")
def test_a_second_job_for_current_data_makes_no_call(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    finished_job(api, post(api, "AAPL"))
    again = finished_job(api, post(api, "AAPL"))
    assert again["status"] == "succeeded"
    assert again["rows_written"] == 0
    assert "no AlphaVantage call" in again["detail"]
    assert calls_for(sandbox, "AAPL") == ["ok"]


@pytest.mark.usefixtures("worker")
def test_twenty_concurrent_posts_make_one_job_and_one_call(
    api: httpx.Client, api_url: str, sandbox: SandboxHandle, session: Session
) -> None:
    def submit(_: int) -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            return client.post(
                "/jobs", json={"symbol": "MSFT"}, headers={"Authorization": f"Bearer {API_TOKEN}"}
            )

    sandbox.script_faults(["slow"], symbol="MSFT")  # keeps the job in flight meanwhile
    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(submit, range(20)))
    ids = {r.json()["data"]["id"] for r in responses}
    assert len(ids) == 1
    assert finished_job(api, ids.pop())["status"] == "succeeded"
    assert calls_for(sandbox, "MSFT") == ["ok"]
    assert session.execute(text("SELECT count(*) FROM jobs")).scalar_one() == 1


@pytest.mark.usefixtures("worker")
def test_invalid_symbol_fails_after_exactly_one_call(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    job = finished_job(api, post(api, "INVALID"))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_symbol"
    assert job["attempts"] == 1
    assert calls_for(sandbox, "INVALID") == ["invalid_symbol"]


@pytest.mark.usefixtures("worker")
def test_premium_only_answer_fails_with_premium_required(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    sandbox.script_faults(["premium_endpoint"], symbol="NVDA")
    job = finished_job(api, post(api, "NVDA"))
    assert job["status"] == "failed"
    assert job["error"]["code"] == "premium_required"
    assert calls_for(sandbox, "NVDA") == ["premium_endpoint"]


@pytest.mark.usefixtures("worker")
def test_full_history_falls_back_to_compact_on_a_free_key(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    job = finished_job(api, post(api, "ORCL", outputsize="full"))
    assert job["status"] == "succeeded", job
    assert job["rows_written"] == 100
    assert calls_for(sandbox, "ORCL") == ["premium_outputsize", "ok"]


# Beat runs too: a retry's dispatcher follow-up may expire unrun on a busy machine, and beat's
# tick is what sends the job again then (as in production).
@pytest.mark.usefixtures("worker", "beat")
def test_two_503s_then_success_succeeds_on_the_third_attempt(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    sandbox.script_faults(["http_503", "http_503"], symbol="AMZN")
    job = finished_job(api, post(api, "AMZN"))
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 3
    assert calls_for(sandbox, "AMZN") == ["http_503", "http_503", "ok"]


@pytest.mark.usefixtures("worker", "beat")
@pytest.mark.parametrize(
    ("symbol", "code", "outcome"),
    [("ERR503", "upstream_error", "http_503"), ("TRUNC", "bad_response", "truncated")],
)
def test_permanently_broken_upstream_fails_at_the_attempt_cap(
    api: httpx.Client,
    sandbox: SandboxHandle,
    session: Session,
    symbol: str,
    code: str,
    outcome: str,
) -> None:
    job = finished_job(api, post(api, symbol))
    assert job["status"] == "failed", job
    assert job["error"]["code"] == code
    assert job["attempts"] == 3  # JOB_MAX_ATTEMPTS in the test settings
    assert calls_for(sandbox, symbol) == [outcome] * 3
    assert FAKE_API_KEY not in job["error"]["message"]


@pytest.mark.usefixtures("beat")
def test_job_committed_but_never_sent_is_run_by_the_dispatcher(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    orphan = create_job(session, "CSCO")  # a crash right after commit: never sent
    session.commit()
    job = finished_job(api, str(orphan.job.id))
    assert job["status"] == "succeeded"
    assert calls_for(sandbox, "CSCO") == ["ok"]
