"""CPU of one job in-process: `shared.domain.refresh.run_job` against the sandbox, without Celery.

`python -m bench.job_cpu [--jobs N]` creates N jobs for new symbols, runs them one after the
other in this process and prints the wall and CPU time per job, and the same for the sandbox
fetch alone (the AlphaVantage client's share). Throwaway servers, as in `python -m bench`.
This is the figure the job's own code controls; the pipeline part of `python -m bench` adds
Celery, the API and the machine around it.
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from collections.abc import Callable

from bench.pipeline import SANDBOX_TODAY
from bench.stack import fresh_database, running_stack
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import running_sandbox


def _per_item(action: Callable[[int], object], count: int) -> tuple[float, float]:
    """Milliseconds of wall and of CPU per call of `action(i)`, over `count` calls."""
    wall, cpu = time.perf_counter(), time.process_time()
    for index in range(count):
        action(index)
    return (
        (time.perf_counter() - wall) * 1000 / count,
        (time.process_time() - cpu) * 1000 / count,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs to run (new symbols)")
    args = parser.parse_args()
    with (
        running_stack(None, None) as stack,
        fresh_database(stack, "jobcpu") as database_url,
        running_sandbox(SandboxConfig(limits=None, today=SANDBOX_TODAY)) as sandbox,
    ):
        os.environ.update(
            stack.process_env(
                database_url,
                ALPHAVANTAGE_BASE_URL=sandbox.base_url,
                ALPHAVANTAGE_RATE_LIMITS="100000/second",
            )
        )
        # Imported once the environment points at the throwaway servers.
        from shared.core.db import dispose_engine, session_scope
        from shared.core.models import OutputSize
        from shared.core.settings import get_settings
        from shared.domain.audit import audited_call_times
        from shared.domain.jobs.records import create_job
        from shared.domain.refresh import Outcome, RunPolicy, run_job
        from shared.upstream.factory import make_upstream

        upstream = make_upstream(get_settings(), audited_call_times)
        policy = RunPolicy.from_settings(get_settings())

        def new_jobs(prefix: str, count: int) -> list[uuid.UUID]:
            ids = []
            for index in range(count):
                with session_scope() as session:
                    ids.append(create_job(session, f"{prefix}{index:05d}").job.id)
            return ids

        def run(ids: list[uuid.UUID]) -> Callable[[int], object]:
            def one(index: int) -> object:
                result = run_job(ids[index], upstream=upstream, policy=policy, worker="bench:1")
                if result.outcome is not Outcome.SUCCEEDED:
                    raise RuntimeError(f"job {index}: {result}")
                return result

            return one

        warm = new_jobs("W", 30)
        _per_item(run(warm), len(warm))
        jobs = new_jobs("J", args.jobs)
        job_wall, job_cpu = _per_item(run(jobs), args.jobs)
        fetch_wall, fetch_cpu = _per_item(
            lambda index: upstream.client.fetch_daily(f"F{index:05d}", OutputSize.COMPACT),
            args.jobs,
        )
        upstream.close()
        dispose_engine()
    print(f"{args.jobs} jobs for new symbols, one at a time, in this process")
    print(f"run_job:              {job_wall:6.2f} ms wall, {job_cpu:5.2f} ms CPU per job")
    print(f"sandbox fetch alone:  {fetch_wall:6.2f} ms wall, {fetch_cpu:5.2f} ms CPU per call")


if __name__ == "__main__":
    main()
