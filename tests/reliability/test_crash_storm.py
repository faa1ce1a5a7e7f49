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
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import NamedTuple

import psutil
import pytest
from sqlalchemy import Engine, text
from sqlmodel import Session

from shared.domain.jobs.lifecycle import claim_job
from stockpile.sandbox.server import SandboxHandle
from tests.processes import Process, celery_beat, celery_worker
from tests.reliability.harness import (
    count_rows,
    create_jobs,
    enter_together,
    job_rows,
    price_row_counts,
    wait_all_finished,
)
from tests.support import wait_until

logger = logging.getLogger(__name__)

JOBS = 50
ROWS_PER_JOB = 100  # a compact answer
# Long enough that a kill lands mid-call, short enough that 50 jobs take ~13 s on 8 slots.
CALL_SECONDS = 2.0
WORKERS = ("storm-a", "storm-b", "storm-c", "storm-d")
# Each step kills one pool child ("child") or a whole worker and its children ("worker").
KILL_PLAN = (
    ("child", "storm-a"),
    ("child", "storm-b"),
    ("worker", "storm-a"),
    ("child", "storm-c"),
    ("worker", "storm-b"),
    ("child", "storm-d"),
    ("child", "storm-c"),
)


@dataclass(frozen=True, slots=True)
class Kill:
    """One SIGKILL and the jobs it interrupted, with their attempts at that moment."""

    kind: str
    worker: str
    victims: dict[uuid.UUID, int]


class Held(NamedTuple):
    """A running job held by a pool process; mid-call when its call is audited but unanswered."""

    job_id: uuid.UUID
    attempts: int
    mid_call: bool


def _held_by(engine: Engine, pids: set[int]) -> dict[int, list[Held]]:
    """The running jobs of these pool processes, by pid."""
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
    held: dict[int, list[Held]] = {}
    for job_id, attempts, worker, mid_call in rows:
        pid = int(worker.rsplit(":", 1)[1])
        if pid in pids:
            held.setdefault(pid, []).append(Held(job_id, attempts, mid_call))
    return held


def _frozen_victims(engine: Engine, pids: set[int]) -> dict[uuid.UUID, int]:
    """Jobs the killed processes held (`running` under their pid until the lease expires)."""
    time.sleep(0.3)  # let a commit that raced the kill land, so the snapshot is final
    return {job.job_id: job.attempts for jobs in _held_by(engine, pids).values() for job in jobs}


def _live_children(worker: Process) -> set[int]:
    """Pids of the worker's pool processes, leaving out killed ones not yet reaped."""
    pids = set()
    for child in worker.children():
        with suppress(psutil.NoSuchProcess):
            if child.status() != psutil.STATUS_ZOMBIE:
                pids.add(child.pid)
    return pids


def _first_call(job: Held) -> bool:
    # Only first calls are interrupted, so no job comes near the attempt cap.
    return job.mid_call and job.attempts == 1


def _kill_child(engine: Engine, worker: Process) -> Kill:
    def victim() -> int | None:
        held = _held_by(engine, _live_children(worker))
        first_calls = (pid for pid, jobs in held.items() if any(_first_call(j) for j in jobs))
        return next(first_calls, None)

    pid = wait_until(victim, timeout=60, interval=0.1, what=f"a call in flight on {worker.name}")
    os.kill(pid, signal.SIGKILL)
    return Kill("child", worker.name, _frozen_victims(engine, {pid}))


def _kill_worker(engine: Engine, worker: Process) -> Kill:
    def mid_first_calls() -> set[int] | None:
        pids = _live_children(worker)
        jobs = [job for held in _held_by(engine, pids).values() for job in held]
        # Any job it holds may be interrupted: none may be past its first call.
        return pids if any(map(_first_call, jobs)) and all(j.attempts <= 1 for j in jobs) else None

    pids = wait_until(mid_first_calls, timeout=60, interval=0.1, what=f"{worker.name} mid-call")
    worker.kill()
    return Kill("worker", worker.name, _frozen_victims(engine, pids))


@pytest.mark.e2e
def test_fifty_jobs_survive_repeated_sigkills_of_children_and_workers(
    engine: Engine, sandbox: SandboxHandle
) -> None:
    sandbox.configure(latency_seconds=CALL_SECONDS)
    kills: list[Kill] = []
    with ExitStack() as stack:
        # All start together: the spares are already up when a whole worker dies.
        _beat, *started = enter_together(
            stack,
            celery_beat({}, name="storm-beat"),
            *(celery_worker({}, name=name) for name in WORKERS),
        )
        workers = {worker.name: worker for worker in started}
        began = time.monotonic()
        create_jobs(engine, [f"CRASH{i:02d}" for i in range(JOBS)])
        for kind, name in KILL_PLAN:
            if kind == "child":
                kills.append(_kill_child(engine, workers[name]))
            else:
                kills.append(_kill_worker(engine, workers.pop(name)))
            logger.info("%.1f s: %s", time.monotonic() - began, kills[-1])
        rows = wait_all_finished(engine, JOBS, timeout=180)
        elapsed = time.monotonic() - began
        assert [w.name for w in workers.values() if w.popen.poll() is None] == list(workers)
        logs = {w.name: w.log() for w in started}

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
    with engine.begin() as connection:
        claim = claim_job(connection, mine, worker="alive@host:2", lease=timedelta(seconds=60))
    assert claim is not None
    assert claim.job.id == mine
    workers = {row.id: row.worker for row in job_rows(engine)}
    assert workers == {mine: "alive@host:2", abandoned_a: "dead@host:1", abandoned_b: "dead@host:1"}
