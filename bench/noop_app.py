"""Bench-only Celery app: the Stockpile worker's configuration with one no-op task.

`celery -A bench.noop_app worker ...` with the same flags as the real worker gives the
throughput of Celery, the broker and the worker settings alone: the pipeline's ceiling.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import redis
from celery import Celery

from bench.pipeline import DONE_KEY, NOOP_TASK
from worker.celery_app import app as stockpile_app

app = Celery("stockpile-bench-noop")
# Everything the real worker is configured with, except its task modules and beat schedule.
app.conf.update(
    {
        key: value
        for key, value in stockpile_app.conf.table(with_defaults=False).items()
        if key not in {"include", "beat_schedule", "deprecated_settings"}
    }
)


@lru_cache
def _redis() -> redis.Redis[Any]:
    return redis.Redis.from_url(app.conf.broker_url)


@app.task(name=NOOP_TASK)
def noop() -> None:
    """Nothing, except counting itself done (the benchmark's only way to see completion)."""
    _redis().incr(DONE_KEY)
