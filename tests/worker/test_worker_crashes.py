"""SIGKILL of a worker while it runs a job: the job still ends `succeeded`, exactly once."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from shared.jobs import get_job
from shared.models import Job
from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_beat, celery_worker
from tests.support import API_TOKEN, wait_until

pytestmark = pytest.mark.e2e

SLOW_SECONDS = 4.0


@pytest.fixture
def beat(session: Session) -> Iterator[Process]:
    with celery_beat({}) as process:
        yield process


def _running_job(session: Session, job_id: uuid.UUID) -> Job | None:
    session.expire_all()
    job = get_job(session, job_id)
    return job if job is not None and job.status == "running" and job.attempts == 1 else None


def _submit_slow_job(api: httpx.Client, sandbox: SandboxHandle, symbol: str) -> uuid.UUID:
    sandbox.configure(slow_seconds=SLOW_SECONDS)
    sandbox.script_faults(["slow"], symbol=symbol)
    response = api.post(
        "/jobs", json={"symbol": symbol}, headers={"Authorization": f"Bearer {API_TOKEN}"}
    )
    return uuid.UUID(response.json()["data"]["id"])


def _assert_succeeded_once(api: httpx.Client, session: Session, job_id: uuid.UUID) -> None:
    def finished() -> dict[str, object] | None:
        job: dict[str, object] = api.get(f"/jobs/{job_id}").json()["data"]
        return job if job["status"] in ("succeeded", "failed") else None

    # Recovery waits for the lease (JOB_LEASE_SECONDS=12) to expire, then beat re-sends.
    job = wait_until(finished, timeout=90, what="the job to finish after the crash")
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 2  # the killed attempt, then the one that finished
    rows = session.execute(
        text("SELECT count(*), count(DISTINCT date) FROM financial_data WHERE symbol = 'IBM'")
    ).one()
    assert tuple(rows) == (100, 100)
    calls = session.execute(
        text("SELECT outcome FROM api_calls WHERE job_id = :id ORDER BY called_at"), {"id": job_id}
    ).scalars()
    assert list(calls) == ["pending", "ok"]  # the killed call still counts in the audit


@pytest.mark.usefixtures("beat")
def test_sigkill_of_the_pool_child_running_a_job(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    with celery_worker({}, name="child-crash") as worker:
        job_id = _submit_slow_job(api, sandbox, "IBM")
        job = wait_until(lambda: _running_job(session, job_id), timeout=30, what="job running")
        assert job.worker is not None
        child_pid = int(job.worker.rsplit(":", 1)[1])
        assert child_pid in {child.pid for child in worker.children()}
        os.kill(child_pid, signal.SIGKILL)
        _assert_succeeded_once(api, session, job_id)


@pytest.mark.usefixtures("beat")
def test_sigkill_of_the_whole_worker_running_a_job(
    api: httpx.Client, sandbox: SandboxHandle, session: Session
) -> None:
    with celery_worker({}, name="doomed") as worker:
        job_id = _submit_slow_job(api, sandbox, "IBM")
        wait_until(lambda: _running_job(session, job_id), timeout=30, what="job running")
        worker.kill()
    with celery_worker({}, name="successor"):
        _assert_succeeded_once(api, session, job_id)
