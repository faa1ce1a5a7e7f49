"""Cost of the lease heartbeat: one renewal, and what it adds per running job per minute.

`python -m bench.lease_renewal [--jobs N] [--renewals R]` claims N jobs (as N running workers
would hold them), then renews their leases round-robin R times through
`shared.domain.jobs.lifecycle.renew_lease` on one pooled connection, and prints per renewal:
wall time, this process's CPU, the database server's CPU (its backend process), the WAL written
and the share of HOT updates. The baseline, measured in the same run, is the claim itself
(`claim_job`), which every job runs once. Per running job and minute the heartbeat makes
60 / (JOB_HEARTBEAT_TIMEOUT_SECONDS / 3) renewals: 12 with the default 15 s window. Throwaway
servers, as in `python -m bench`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from bench.stack import fresh_database, running_stack

RENEWALS_PER_MINUTE_DEFAULT = 60 / (15.0 / 3)


@dataclass(frozen=True, slots=True)
class Cost:
    """Per statement: milliseconds of wall, client CPU and server CPU, and WAL bytes."""

    wall_ms: float
    client_cpu_ms: float
    server_cpu_ms: float
    wal_bytes: float


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="running jobs to renew")
    parser.add_argument("--renewals", type=int, default=20_000, help="renewals to time")
    args = parser.parse_args()
    with running_stack(None, None) as stack, fresh_database(stack, "lease") as database_url:
        os.environ.update(stack.process_env(database_url))
        # Imported once the environment points at the throwaway servers.
        from sqlalchemy import Connection, text

        from shared.core.db import autocommit_connection, dispose_engine, session_scope
        from shared.domain.heartbeat import LeaseTerms
        from shared.domain.jobs.lifecycle import claim_job, renew_lease
        from shared.domain.jobs.records import create_job

        terms = LeaseTerms(window=dt.timedelta(seconds=15), hard_bound=dt.timedelta(minutes=5))

        def measured(connection: Connection, count: int, statement: Callable[[int], None]) -> Cost:
            backend = psutil.Process(
                connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
            )
            wal_before = connection.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
            server_before = sum(backend.cpu_times()[:2])
            wall, cpu = time.perf_counter(), time.process_time()
            for index in range(count):
                statement(index)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server = sum(backend.cpu_times()[:2]) - server_before
            wal = connection.execute(
                text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :before)"),
                {"before": wal_before},
            ).scalar_one()
            return Cost(
                wall * 1000 / count, cpu * 1000 / count, server * 1000 / count, float(wal) / count
            )

        with session_scope() as session:
            ids = [create_job(session, f"L{index:05d}").job.id for index in range(args.jobs)]
        with autocommit_connection() as connection:
            claims = []

            def claim(index: int) -> None:
                claimed = claim_job(
                    connection, ids[index], worker="bench:1", lease=terms.first_lease
                )
                assert claimed is not None
                claims.append(claimed.job)

            claim_cost = measured(connection, len(ids), claim)

            def renew(index: int) -> None:
                job = claims[index % len(claims)]
                assert job.started_at is not None
                expires = renew_lease(
                    connection,
                    job.id,
                    worker="bench:1",
                    claimed_at=job.started_at,
                    window=terms.window,
                    hard_bound=terms.hard_bound,
                )
                assert expires is not None

            renew_cost = measured(connection, args.renewals, renew)
            hot, updates = connection.execute(
                text(
                    "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables"
                    " WHERE relname = 'jobs'"
                )
            ).one()
        dispose_engine()
    per_minute = RENEWALS_PER_MINUTE_DEFAULT
    print(f"{args.jobs} running jobs, {args.renewals} renewals round-robin, one connection")
    for name, cost in (("claim (baseline)", claim_cost), ("renewal", renew_cost)):
        print(
            f"{name:17} {cost.wall_ms:6.3f} ms wall, {cost.client_cpu_ms:6.3f} ms client CPU,"
            f" {cost.server_cpu_ms:6.3f} ms server CPU, {cost.wal_bytes:6.0f} B WAL"
        )
    print(f"HOT updates of jobs: {hot} of {updates} (statistics may lag by a second)")
    print(
        f"per running job per minute ({per_minute:.0f} renewals, 15 s window):"
        f" {renew_cost.wall_ms * per_minute:.1f} ms of a connection,"
        f" {renew_cost.client_cpu_ms * per_minute:.1f} ms worker CPU,"
        f" {renew_cost.server_cpu_ms * per_minute:.1f} ms server CPU,"
        f" {renew_cost.wal_bytes * per_minute / 1024:.1f} KiB WAL"
    )


if __name__ == "__main__":
    main()
