"""Beat's log while the broker is down: one warning per missed tick instead of a traceback.

Celery's `Scheduler.apply_entry` logs every send that fails as `Message Error: Couldn't apply
scheduled task ...` at ERROR, with the formatted stack and the whole exception chain (redis-py,
then kombu's `OperationalError`, then Celery's `SchedulingError`): some eighty lines per tick.
An operator reads that as a fault, yet nothing is lost: the schedule keeps ticking, and the
first tick after the broker is back sends again. The workers already say "Connection to broker
lost" in one line, so beat does too. Any other failure to send keeps Celery's full record.

A filter on Celery's `celery.beat` logger rather than a patched Scheduler: it only rewrites the
record, so Celery's behaviour is untouched, and it runs before the handlers (and their secret
redactor) see the record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import redis.exceptions
from celery.beat import SchedulingError

__all__ = ["BEAT_LOGGER", "BrokerOutageFilter", "attach_broker_outage_filter"]

BEAT_LOGGER = "celery.beat"
# SchedulingError's text is f"Couldn't apply scheduled task {entry.name}: {cause}".
_APPLY_PREFIX = "Couldn't apply scheduled task "
# The broker could not be reached: redis-py's connection and timeout errors (BusyLoadingError, a
# Redis still loading its data after a restart, is one) or the socket's own. kombu wraps these
# and Redis' refusals of a command (OOM, READONLY) in the same OperationalError, so that class
# alone would hide real faults.
_UNREACHABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)
# A subclass of redis-py's ConnectionError, but a wrong password is a fault to fix, not an outage
# to wait out: it keeps its traceback.
_MISCONFIGURED = (redis.exceptions.AuthenticationError,)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or while handling, as a traceback shows them."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        cause = current.__cause__
        current = (
            cause if cause is not None or current.__suppress_context__ else current.__context__
        )


def broker_unreachable(exc: BaseException) -> BaseException | None:
    """The error in `exc`'s chain saying the broker could not be reached, if that is all it says."""
    chain = list(_chain(exc))
    if any(isinstance(error, _MISCONFIGURED) for error in chain):
        return None
    return next((error for error in chain if isinstance(error, _UNREACHABLE)), None)


def _type_name(error: BaseException) -> str:
    """`redis.exceptions.ConnectionError`: a bare `ConnectionError` reads as the builtin."""
    cls = type(error)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


class BrokerOutageFilter(logging.Filter):
    """Rewrite beat's failed sends caused by an unreachable broker into one WARNING line.

    The record keeps its logger and time; its level becomes WARNING and its exception and stack
    are dropped. Every other record passes unchanged; none is ever dropped.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, SchedulingError):
            return True
        error = broker_unreachable(exc)
        if error is None:
            return True
        # Celery formats the error it caught: the one this SchedulingError was raised handling.
        entry = str(exc).removeprefix(_APPLY_PREFIX).removesuffix(f": {exc.__context__}")
        record.msg = (
            "beat: broker unreachable, %s not sent this tick (%s: %s); "
            "it is sent at the next tick after the broker is back"
        )
        record.args = (entry, _type_name(error), error)
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return True


_FILTER = BrokerOutageFilter()


def attach_broker_outage_filter() -> None:
    """Filter beat's records (idempotent: the same filter is never added twice)."""
    # A logger's filter sees only records created on that very logger: Celery's beat logs on it.
    logging.getLogger(BEAT_LOGGER).addFilter(_FILTER)
