"""The job pipeline: POST /jobs to `succeeded` through one worker, against a no-op Celery task."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import httpx
import redis
from celery import Celery
from pydantic import SecretStr
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.cpu import cpu_by_role
from bench.memory import RssSampler
from bench.processes import Process, running_api, running_worker
from bench.profile import WORKER_PARTS, sampling
from bench.stack import BENCH_API_KEY, BENCH_TOKEN, Stack
from shared.domain.queue import QUEUE
from shared.upstream.client import AlphaVantageClient
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import running_sandbox

logger = logging.getLogger(__name__)

NOOP_SHARE_TARGET = 0.4
# The no-op task of bench.noop_app, and the Redis counter it increments.
NOOP_TASK = "bench.noop"
DONE_KEY = "bench:noop:done"
# Every job may take a token at once: the limiter still runs, it just never makes anyone wait.
RATE_LIMITS = "100000/second"
POST_CONCURRENCY = 8
WORKER_PROCESSES = 2
# Fetches of new symbols timed without the pipeline: the sandbox's share of a job.
UPSTREAM_CALLS = 300
# The sandbox builds a new symbol's history day by day from 1999-11 to its "today": for the real
# today that is ~40-70 ms of its CPU per distinct symbol, on the cores the worker needs, which
# made the sandbox the bottleneck (the real AlphaVantage costs us no CPU). Seven months of
# history still fill a 100-bar compact answer. (bench/quota.py does the same.)
SANDBOX_TODAY = dt.date(2000, 6, 1)


@dataclass(frozen=True)
class PipelineResult:
    """Jobs per second end to end, and the no-op task rate on the same broker and settings."""

    jobs: int
    pipeline_seconds: float
    posting_seconds: float
    noop_seconds: tuple[float, float]
    upstream_calls: int
    upstream_seconds: float
    worker_profile: dict[str, float]
    # CPU seconds by role (bench.cpu) while the jobs ran, and while both no-op runs ran.
    pipeline_cpu: dict[str, float]
    noop_cpu: dict[str, float]

    @property
    def pipeline_rate(self) -> float:
        """Jobs per second from the first POST to the last `succeeded`."""
        return self.jobs / self.pipeline_seconds

    @property
    def noop_rate(self) -> float:
        """No-op tasks per second from the first send to the last completion (both runs)."""
        return 2 * self.jobs / sum(self.noop_seconds)

    @property
    def noop_rates(self) -> tuple[float, float]:
        """The no-op rate before and after the pipeline: how much the machine drifted."""
        before, after = self.noop_seconds
        return self.jobs / before, self.jobs / after

    @property
    def upstream_rate(self) -> float:
        """Sandbox fetches per second (the worker's client, 2 threads, new symbols): no DB."""
        return self.upstream_calls / self.upstream_seconds

    @property
    def ratio(self) -> float:
        """Pipeline rate over no-op rate."""
        return self.pipeline_rate / self.noop_rate

    @property
    def met(self) -> bool:
        """Whether the pipeline reaches its share of the no-op rate."""
        return self.ratio >= NOOP_SHARE_TARGET


def run_pipeline(
    stack: Stack,
    database_url: str,
    *,
    jobs: int,
    sampler: RssSampler,
    profile: bool = False,
    timeout: float = 600,
) -> PipelineResult:
    """`jobs` jobs for distinct symbols through the API and one 2-process worker.

    The no-op baseline runs before and after the jobs (the machine's load drifts); with
    `profile`, py-spy samples the worker's pool processes while the jobs run.
    """
    noop_before, noop_cpu_before = _noop_run(stack, jobs, sampler, timeout)
    with running_sandbox(SandboxConfig(limits=None, today=SANDBOX_TODAY)) as sandbox:
        env = stack.process_env(
            database_url,
            ALPHAVANTAGE_BASE_URL=sandbox.base_url,
            ALPHAVANTAGE_RATE_LIMITS=RATE_LIMITS,
        )
        with (
            running_api(env) as (api, url),
            running_worker(
                env, app="worker.celery_app", name="bench-jobs", concurrency=WORKER_PROCESSES
            ) as worker,
        ):
            _watch_worker(sampler, worker, "job pipeline")
            sampler.watch("API (job pipeline)", api.pid)
            pipeline_seconds, posting_seconds, worker_profile, pipeline_cpu = _jobs(
                url, database_url, stack.redis_url, worker, jobs, timeout, profile
            )
            sampler.unwatch("API (job pipeline)")
            _unwatch_worker(sampler, "job pipeline")
        upstream_calls = min(jobs, UPSTREAM_CALLS)
        upstream_seconds = _upstream_alone(sandbox.base_url, upstream_calls)
    noop_after, noop_cpu_after = _noop_run(stack, jobs, sampler, timeout)
    result = PipelineResult(
        jobs,
        pipeline_seconds,
        posting_seconds,
        (noop_before, noop_after),
        upstream_calls,
        upstream_seconds,
        worker_profile,
        pipeline_cpu,
        {role: noop_cpu_before[role] + noop_cpu_after[role] for role in noop_cpu_before},
    )
    logger.info(
        "pipeline: %.1f jobs/s (POSTs took %.1f s), no-op %.1f tasks/s, sandbox alone %.1f/s",
        result.pipeline_rate,
        posting_seconds,
        result.noop_rate,
        result.upstream_rate,
    )
    return result


def _noop_run(
    stack: Stack, tasks: int, sampler: RssSampler, timeout: float
) -> tuple[float, dict[str, float]]:
    """Seconds for `tasks` no-op tasks through a worker like the pipeline's, and CPU by role."""
    env = stack.process_env("")  # the no-op app never touches the database
    with running_worker(
        env, app="bench.noop_app", name="bench-noop", concurrency=WORKER_PROCESSES
    ) as worker:
        _watch_worker(sampler, worker, "no-op")
        try:
            return _noops(stack.server_url, stack.redis_url, worker, tasks, timeout)
        finally:
            _unwatch_worker(sampler, "no-op")


def _watch_worker(sampler: RssSampler, worker: Process, label: str) -> None:
    sampler.watch(f"worker main process ({label})", worker.pid)
    sampler.watch(f"worker pool process ({label})", worker.pid, children=True)


def _unwatch_worker(sampler: RssSampler, label: str) -> None:
    sampler.unwatch(f"worker main process ({label})")
    sampler.unwatch(f"worker pool process ({label})")


def _jobs(
    url: str,
    database_url: str,
    redis_url: str,
    worker: Process,
    jobs: int,
    timeout: float,
    profile: bool,
) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """Seconds from the first POST until every job succeeded, seconds spent POSTing, the
    profile, CPU by role."""
    engine = create_engine(database_url, poolclass=NullPool)
    headers = {"Authorization": f"Bearer {BENCH_TOKEN}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:

            def post(symbol: str) -> None:
                response = client.post("/jobs", json={"symbol": symbol})
                if response.status_code != 202:
                    raise RuntimeError(
                        f"POST /jobs {symbol}: {response.status_code} {response.text}"
                    )

            def succeeded(prefix: str) -> int:
                with engine.connect() as connection:
                    failed, done = connection.execute(
                        text(
                            "SELECT count(*) FILTER (WHERE status = 'failed'),"
                            " count(*) FILTER (WHERE status = 'succeeded')"
                            " FROM jobs WHERE symbol LIKE :prefix"
                        ),
                        {"prefix": f"{prefix}%"},
                    ).one()
                if failed:
                    raise RuntimeError(f"{failed} {prefix}* jobs failed")
                return int(done)

            # One job first: the worker is ready once it has finished one.
            post("WARMUP")
            _wait(lambda: succeeded("WARMUP") == 1, worker, timeout, "the warm-up job")
            symbols = [f"P{number:04d}" for number in range(1, jobs + 1)]
            pool_pids = [child.pid for child in worker.children()]
            profiling: AbstractContextManager[dict[str, float]] = (
                sampling(pool_pids, WORKER_PARTS, cpu_only=False) if profile else nullcontext({})
            )
            with profiling as worker_profile, cpu_by_role(database_url, redis_url) as spent:
                began = time.perf_counter()
                with ThreadPoolExecutor(POST_CONCURRENCY) as pool:
                    list(pool.map(post, symbols))
                posted = time.perf_counter()
                _wait(lambda: succeeded("P") == jobs, worker, timeout, f"{jobs} jobs")
                finished = time.perf_counter()
            return finished - began, posted - began, worker_profile, spent
    finally:
        engine.dispose()


def _noops(
    database_url: str, redis_url: str, worker: Process, tasks: int, timeout: float
) -> tuple[float, dict[str, float]]:
    """Seconds from the first send until `tasks` no-op tasks have run, and CPU by role."""
    client = redis.Redis.from_url(redis_url)
    producer = Celery("bench-noop-producer", broker=redis_url)
    producer.conf.update(task_serializer="json", accept_content=["json"])
    try:
        client.delete(DONE_KEY)
        producer.send_task(NOOP_TASK, queue=QUEUE)
        _wait(lambda: int(client.get(DONE_KEY) or 0) == 1, worker, timeout, "the warm-up no-op")
        client.delete(DONE_KEY)
        with cpu_by_role(database_url, redis_url) as spent:
            began = time.perf_counter()
            with producer.connection_for_write() as connection:
                for _ in range(tasks):
                    producer.send_task(NOOP_TASK, queue=QUEUE, connection=connection)
            _wait(lambda: int(client.get(DONE_KEY) or 0) >= tasks, worker, timeout, "the no-ops")
            seconds = time.perf_counter() - began
        return seconds, spent
    finally:
        client.delete(DONE_KEY)
        client.close()


def _upstream_alone(base_url: str, calls: int) -> float:
    """Seconds for `calls` fetches of unseen symbols by the worker's client, 2 at a time."""
    symbols = [f"U{number:04d}" for number in range(1, calls + 1)]
    clients = [
        AlphaVantageClient(base_url=base_url, api_key=SecretStr(BENCH_API_KEY))
        for _ in range(WORKER_PROCESSES)
    ]
    try:
        began = time.perf_counter()
        with ThreadPoolExecutor(WORKER_PROCESSES) as pool:
            list(
                pool.map(
                    lambda i: clients[i % WORKER_PROCESSES].fetch_daily(symbols[i], "compact"),
                    range(calls),
                )
            )
        return time.perf_counter() - began
    finally:
        for client in clients:
            client.close()


def _wait(done: Callable[[], bool], worker: Process, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        worker.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not finish in {timeout:g} s:\n{worker.log_tail()}")
        time.sleep(0.2)
