"""Shared tools of the reliability tests: job snapshots, bounded waits, a raw broker producer."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import TypeVar

from celery import Celery
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from shared.domain.jobs.records import create_job
from shared.domain.queue import QUEUE, TASK_RUN_JOB
from tests.support import wait_until

FINISHED = frozenset({"succeeded", "failed"})
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class JobRow:
    """A job as the reliability tests look at it."""

    id: uuid.UUID
    symbol: str
    status: str
    attempts: int
    worker: str | None
    error_code: str | None
    error_message: str | None
    detail: str | None
    not_before_set: bool


def job_rows(engine: Engine) -> list[JobRow]:
    """Every job, by symbol, read in a fresh transaction."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, symbol, status, attempts, worker, error_code, error_message, detail,"
                " not_before IS NOT NULL AS not_before_set FROM jobs ORDER BY symbol, created_at"
            )
        ).all()
    return [JobRow(*row) for row in rows]


def create_jobs(engine: Engine, symbols: Iterable[str]) -> list[uuid.UUID]:
    """Queued jobs in PostgreSQL only (as after a crash between commit and send)."""
    with Session(engine) as session:
        ids = [create_job(session, symbol, source="api").job.id for symbol in symbols]
        session.commit()
    return ids


def clear_tracked_symbols(engine: Engine) -> None:
    """No tracked symbols, so beat's refresh tick creates no jobs of its own."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tracked_symbols"))


def all_finished(engine: Engine, count: int) -> list[JobRow] | None:
    """The jobs once there are `count` and every one has finished; None before (or when down)."""
    try:
        rows = job_rows(engine)
    except OperationalError:
        return None
    if len(rows) == count and all(row.status in FINISHED for row in rows):
        return rows
    return None


def wait_all_finished(engine: Engine, count: int, *, timeout: float) -> list[JobRow]:
    """Block until all `count` jobs finished; fail with the unfinished ones otherwise."""
    try:
        return wait_until(
            lambda: all_finished(engine, count), timeout=timeout, interval=0.5, what="jobs"
        )
    except AssertionError:
        pending = [row for row in job_rows(engine) if row.status not in FINISHED]
        raise AssertionError(f"not finished after {timeout} s: {pending}") from None


def count_rows(engine: Engine, sql: str, **params: object) -> int:
    """The single integer a counting query returns."""
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def price_row_counts(engine: Engine) -> tuple[int, int]:
    """Stored price rows, and distinct (symbol, date) pairs among them."""
    with engine.connect() as conn:
        total, distinct = conn.execute(
            text("SELECT count(*), count(DISTINCT (symbol, date)) FROM financial_data")
        ).one()
    return int(total), int(distinct)


def send_jobs_to_broker(broker_url: str, job_ids: Sequence[uuid.UUID]) -> None:
    """Publish run-job messages straight to a broker, bypassing the dispatcher's budget."""
    app = Celery("reliability-producer", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue=QUEUE)
    try:
        for job_id in job_ids:
            app.send_task(TASK_RUN_JOB, args=[str(job_id)], queue=QUEUE)
    finally:
        app.close()


def enter_together(stack: ExitStack, *managers: AbstractContextManager[T]) -> list[T]:
    """Enter the context managers at once (process start-ups overlap), exiting them with `stack`."""
    with ThreadPoolExecutor(max_workers=len(managers)) as pool:
        futures = [pool.submit(manager.__enter__) for manager in managers]
    values: list[T] = []
    failure: BaseException | None = None
    for manager, future in zip(managers, futures, strict=True):
        try:
            values.append(future.result())
        except BaseException as exc:  # the others still get their exit
            failure = failure or exc
            continue
        stack.push(manager)
    if failure is not None:
        raise failure
    return values
