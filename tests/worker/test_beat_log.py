"""Beat's failed sends: an unreachable broker is one warning line, any other failure a traceback.

Celery's own Scheduler.apply_entry logs the failure; the broker is a port nobody listens on, so
the errors are the ones kombu and redis-py really raise (each send fails after kombu's publish
retries, well under a second).
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis.exceptions
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from kombu.exceptions import OperationalError

from shared.core.logs import FORMAT
from stockpile.localstack import free_port
from worker.beat_log import (
    BEAT_LOGGER,
    BrokerOutageFilter,
    attach_broker_outage_filter,
    broker_unreachable,
)


def line_start(level: str) -> str:
    """The start of a beat line in the project's format (date, time, level, logger), as a regex."""
    return rf"\S+ \S+ {level} celery\.beat: "


@pytest.fixture
def beat_log() -> Iterator[io.StringIO]:
    """Beat's logger, filtered as in beat, written to a buffer in the project's format."""
    logger = logging.getLogger(BEAT_LOGGER)
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter(FORMAT))
    attach_broker_outage_filter()
    attach_broker_outage_filter()  # configured twice (worker and beat both log in): one filter
    logger.addHandler(handler)
    # Warnings and errors only, whatever an earlier test of this process set: beat's INFO line
    # "Sending due task" is not what these tests are about.
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield output
    finally:
        logger.setLevel(level)
        logger.removeHandler(handler)
        for added in [f for f in logger.filters if isinstance(f, BrokerOutageFilter)]:
            logger.removeFilter(added)


@pytest.fixture
def scheduler() -> Iterator[Scheduler]:
    """A scheduler of an app whose broker does not answer."""
    app = Celery("beat-log-test", set_as_current=False)
    app.conf.update(
        broker_url=f"redis://127.0.0.1:{free_port()}/0",
        broker_transport_options={"socket_connect_timeout": 1},
        task_serializer="json",
    )
    try:
        yield Scheduler(app, lazy=True)
    finally:
        app.close()


def _send(scheduler: Scheduler, *args: object) -> None:
    entry = ScheduleEntry(
        name="dispatch-due-jobs",
        task="stockpile.dispatch_due_jobs",
        schedule=timedelta(seconds=1),
        args=args,
        app=scheduler.app,
    )
    scheduler.apply_entry(entry)


def test_an_unreachable_broker_is_one_warning_line(
    beat_log: io.StringIO, scheduler: Scheduler
) -> None:
    assert len(logging.getLogger(BEAT_LOGGER).filters) == 1
    _send(scheduler)
    lines = beat_log.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(
        line_start("WARNING") + r"beat: broker unreachable, dispatch-due-jobs not sent this tick "
        r"\(redis\.exceptions\.ConnectionError: Error 111 connecting to 127\.0\.0\.1:\d+\. "
        r"Connection refused\.\); it is sent at the next tick after the broker is back",
        lines[0],
    ), lines[0]


def test_any_other_send_failure_keeps_celerys_error_and_traceback(
    beat_log: io.StringIO, scheduler: Scheduler
) -> None:
    _send(scheduler, object())  # not JSON: the send fails before it reaches for the broker
    output = beat_log.getvalue()
    error = line_start("ERROR") + "Message Error: Couldn't apply scheduled task dispatch-due-jobs"
    assert re.match(error, output), output
    assert "Traceback (most recent call last)" in output
    assert "kombu.exceptions.EncodeError" in output
    assert "broker unreachable" not in output


def _raised(error: BaseException, cause: BaseException) -> BaseException:
    """`error` as kombu raises it: `raise error from cause`, inside a handler of `cause`."""
    try:
        try:
            raise cause
        except BaseException as handled:
            raise error from handled
    except BaseException as raised:
        return raised


def test_only_a_broker_out_of_reach_counts_as_an_outage() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    assert broker_unreachable(_raised(OperationalError("refused"), refused)) is refused
    timeout = redis.exceptions.TimeoutError("Timeout reading from socket")
    assert broker_unreachable(_raised(OperationalError("timeout"), timeout)) is timeout
    loading = redis.exceptions.BusyLoadingError("Redis is loading the dataset in memory")
    assert broker_unreachable(_raised(OperationalError("loading"), loading)) is loading
    # kombu wraps a refused command in the same OperationalError: a fault, not an outage.
    oom = redis.exceptions.ResponseError("OOM command not allowed")
    assert broker_unreachable(_raised(OperationalError("oom"), oom)) is None
    # A wrong password is a redis-py ConnectionError too, but waiting will not fix it.
    denied = redis.exceptions.AuthenticationError("invalid username-password pair")
    assert broker_unreachable(_raised(OperationalError("auth"), denied)) is None
