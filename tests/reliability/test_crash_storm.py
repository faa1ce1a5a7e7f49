"""A storm of SIGKILLs across a run of 50 jobs: pool children and whole workers die mid-call.

Every job must still end `succeeded` exactly once (one job row per symbol, no duplicate price
rows), nothing may stay `running` once leases expire, and every killed call stays in the audit.
"""

from __future__ import annotations

import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from shared.jobs import claim_job
from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_beat, celery_worker
from tests.reliability.harness import (
    clear_tracked_symbols,
    count_rows,
    create_jobs,
    job_rows,
    price_row_counts,
    wait_all_finished,
)
from tests.support import wait_until

pytestmark = pytest.mark.e2e
logger = logging.getLogger(__name__)

JOBS = 50
ROWS_PER_JOB = 100  # a compact answer
# Long enough that a kill lands mid-call, short enough that 50 jobs take ~20 s on 4 slots.
CALL_SECONDS = 1.5
# Each step kills one pool child ("child") or a whole worker and its children ("worker").
KILL_PLAN = ("child", "child", "worker", "child", "worker", "child")


@dataclass(frozen=True, slots=True)
class Kill:
    """One SIGKILL and the jobs it interrupted, with their attempts at that moment."""

    kind: str
    worker: str
    victims: dict[uuid.UUID, int]


@pytest.fixture
def engine(session: Session) -> Engine:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    clear_tracked_symbols(engine)
    return engine


@pytest.fixture
def beat(engine: Engine) -> Iterator[Process]:
    with celery_beat({}, name="storm-beat") as process:
        yield process


def _in_call(engine: Engine, pids: set[int]) -> dict[int, list[tuple[uuid.UUID, int]]]:
    """Running jobs of these pool processes, by pid, with their attempts, -attempts when mid-call.

    A job is mid-call when this run's AlphaVantage call is audited but has no outcome yet.
    """
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT id, attempts, worker, EXISTS (
                    SELECT 1 FROM api_calls c WHERE c.job_id = j.id AND c.outcome = 'pending'
                      AND c.called_at >= j.started_at) AS mid_call
                FROM jobs j WHERE status = 'running'
                """
            )
        ).all()
    held: dict[int, list[tuple[uuid.UUID, int]]] = {}
    for job_id, attempts, worker, mid_call in rows:
        pid = int(worker.rsplit(":", 1)[1])
        if pid in pids:
            held.setdefault(pid, []).append((job_id, attempts if mid_call else -attempts))
    return held


def _frozen_victims(engine: Engine, pids: set[int]) -> dict[uuid.UUID, int]:
    """Jobs the killed processes held: still `running` under their pid until the lease expires."""
    time.sleep(0.3)  # let a commit that raced the kill land, so the snapshot is final
    held = _in_call(engine, pids)
    return {job_id: abs(attempts) for jobs in held.values() for job_id, attempts in jobs}


def _kill_child(engine: Engine, worker: Process) -> Kill:
    # Only a first call is interrupted, so no job comes near the attempt cap.
    def victim() -> int | None:
        held = _in_call(engine, {child.pid for child in worker.children()})
        return next((pid for pid, jobs in held.items() if (1 in dict(jobs).values())), None)

    pid = wait_until(victim, timeout=60, interval=0.1, what=f"a call in flight on {worker.name}")
    os.kill(pid, signal.SIGKILL)
    return Kill("child", worker.name, _frozen_victims(engine, {pid}))


def _kill_worker(engine: Engine, worker: Process) -> Kill:
    def mid_first_calls() -> set[int] | None:
        pids = {child.pid for child in worker.children()}
        attempts = [a for jobs in _in_call(engine, pids).values() for _, a in jobs]
        return pids if 1 in attempts and all(a <= 1 for a in attempts) else None

    pids = wait_until(mid_first_calls, timeout=60, interval=0.1, what=f"{worker.name} mid-call")
    worker.kill()
    return Kill("worker", worker.name, _frozen_victims(engine, pids))


def test_fifty_jobs_survive_repeated_sigkills_of_children_and_workers(
    engine: Engine, beat: Process, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=CALL_SECONDS)
    started = time.monotonic()
    kills: list[Kill] = []
    with ExitStack() as stack:
        workers = {
            name: stack.enter_context(celery_worker({}, name=name))
            for name in ("storm-a", "storm-b")
        }
        started_workers = list(workers.values())
        create_jobs(engine, [f"CRASH{i:02d}" for i in range(JOBS)])
        generation = 0
        for step, kind in enumerate(KILL_PLAN):
            name = sorted(workers)[step % len(workers)]
            if kind == "child":
                kills.append(_kill_child(engine, workers[name]))
            else:
                kills.append(_kill_worker(engine, workers.pop(name)))
                generation += 1
                replacement = f"storm-r{generation}"
                workers[replacement] = stack.enter_context(celery_worker({}, name=replacement))
                started_workers.append(workers[replacement])
            logger.info("%.1f s: %s", time.monotonic() - started, kills[-1])
        rows = wait_all_finished(engine, JOBS, timeout=180)
        elapsed = time.monotonic() - started
        survivors = [w for w in workers.values() if w.popen.poll() is None]
        assert len(survivors) == len(workers)
        logs = {w.name: w.log() for w in started_workers}

    victims = {job_id: attempts for kill in kills for job_id, attempts in kill.victims.items()}
    logger.info(
        "crash storm: %d jobs, %d kills (%d jobs interrupted) in %.1f s",
        JOBS,
        len(kills),
        len(victims),
        elapsed,
    )
    assert all(kill.victims for kill in kills), kills  # every kill interrupted a call
    assert len(victims) >= len(KILL_PLAN)
    assert [row.status for row in rows] == ["succeeded"] * JOBS, rows
    assert len({row.symbol for row in rows}) == JOBS  # one job per symbol: no duplicate job
    assert price_row_counts(engine) == (JOBS * ROWS_PER_JOB, JOBS * ROWS_PER_JOB)
    by_id = {row.id: row for row in rows}
    for job_id, attempts_at_kill in victims.items():
        assert by_id[job_id].attempts > attempts_at_kill, by_id[job_id]
    # The interrupted calls stay in the audit as `pending`, so they count against the budget.
    with engine.connect() as conn:
        interrupted = set(
            conn.execute(text("SELECT job_id FROM api_calls WHERE outcome = 'pending'")).scalars()
        )
    assert {job_id for job_id, attempts in victims.items() if attempts >= 1} <= interrupted
    audited = count_rows(engine, "SELECT count(*) FROM api_calls")
    assert len(sandbox.stats().calls) <= audited  # every call that reached upstream is audited
    assert count_rows(engine, "SELECT count(*) FROM jobs WHERE status = 'running'") == 0
    # A task may only fail by its time limit (a loaded machine vs the tests' 12 s lease).
    unexpected = [
        line
        for log in logs.values()
        for line in log.splitlines()
        if "raised unexpected" in line and "TimeLimitExceeded" not in line
    ]
    assert unexpected == []


def test_claim_takes_only_its_own_job_while_other_leases_are_expired(session: Session) -> None:
    # Found by the storm: the claim's condition lacked parentheses and took over (or tripped on)
    # every running job whose lease had expired, until the dispatcher released them.
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    mine, abandoned_a, abandoned_b = create_jobs(engine, ["MINE", "GONEA", "GONEB"])
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE jobs SET status = 'running', worker = 'dead@host:1',"
                " lease_expires_at = now() - interval '1 second' WHERE id <> :id"
            ),
            {"id": mine},
        )
    with Session(engine, expire_on_commit=False) as claiming:
        job = claim_job(claiming, mine, worker="alive@host:2", lease=timedelta(seconds=60))
        claiming.commit()
    assert job is not None
    assert job.id == mine
    workers = {row.id: row.worker for row in job_rows(engine)}
    assert workers == {mine: "alive@host:2", abandoned_a: "dead@host:1", abandoned_b: "dead@host:1"}
