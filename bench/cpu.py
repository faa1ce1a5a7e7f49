"""Where the CPU went during a measurement: the benchmark's own processes, grouped by role.

A rate on two shared cores is bounded by the CPU that every process on the path spends per
item (API, worker, PostgreSQL, Redis, the sandbox, the load generator), not only the measured
one's. Counted: this process and its descendants, the PostgreSQL server (the postmaster and its
backends, found from a connection's backend pid) and the Redis server (its INFO pid); "rest of
the machine" is everything else that ran meanwhile (other jobs on a shared machine).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

ROLES = (
    "worker",
    "API",
    "PostgreSQL",
    "Redis",
    "sandbox",
    "benchmark client",
    "profiler (py-spy, with --profile)",
    "rest of the machine",
)


def _postmaster(database_url: str) -> psutil.Process:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            backend = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            parent = psutil.Process(backend).parent()  # while the backend still lives
    finally:
        engine.dispose()
    assert parent is not None
    return parent


def _redis_server(redis_url: str) -> psutil.Process:
    client = redis.Redis.from_url(redis_url)
    try:
        return psutil.Process(int(client.info("server")["process_id"]))
    finally:
        client.close()


def _role(process: psutil.Process) -> str:
    if process.pid == os.getpid():
        return "benchmark client"
    if process.name() == "py-spy":
        return "profiler (py-spy, with --profile)"
    command = " ".join(process.cmdline())
    if "celery" in command and " worker" in command:
        return "worker"
    if "uvicorn" in command:
        return "API"
    if "sandbox" in command:
        return "sandbox"
    return "benchmark client"  # helpers of this process (none expected)


def _cpu(process: psutil.Process, *, reaped_children: bool = False) -> float:
    times = process.cpu_times()
    cpu = times.user + times.system
    if reaped_children:  # PostgreSQL backends that exited are reaped by the postmaster
        cpu += times.children_user + times.children_system
    return cpu


class _Snapshot:
    def __init__(self, postmaster: psutil.Process, redis_server: psutil.Process) -> None:
        self.by_pid: dict[int, tuple[str, float]] = {}
        groups = [
            ("PostgreSQL", [postmaster, *postmaster.children()]),
            ("Redis", [redis_server]),
        ]
        me = psutil.Process()
        for process in [me, *me.children(recursive=True)]:
            self._add(process, None)
        for role, processes in groups:
            for process in processes:
                self._add(process, role, reaped_children=process is postmaster)
        machine = psutil.cpu_times()
        self.machine = machine.user + machine.system + machine.nice

    def _add(
        self, process: psutil.Process, role: str | None, *, reaped_children: bool = False
    ) -> None:
        try:
            with process.oneshot():
                self.by_pid[process.pid] = (
                    role or _role(process),
                    _cpu(process, reaped_children=reaped_children),
                )
        except psutil.Error:
            pass  # exited meanwhile


@contextmanager
def cpu_by_role(database_url: str, redis_url: str) -> Iterator[dict[str, float]]:
    """CPU seconds per role spent inside the block (filled in when it ends)."""
    postmaster, redis_server = _postmaster(database_url), _redis_server(redis_url)
    spent: dict[str, float] = {}
    before = _Snapshot(postmaster, redis_server)
    yield spent
    after = _Snapshot(postmaster, redis_server)
    totals: dict[str, float] = defaultdict(float)
    for pid, (role, cpu) in after.by_pid.items():
        _, earlier = before.by_pid.get(pid, (role, 0.0))
        totals[role] += max(0.0, cpu - earlier)
    ours = sum(totals.values())
    totals["rest of the machine"] = max(0.0, after.machine - before.machine - ours)
    spent.update({role: totals[role] for role in ROLES})
