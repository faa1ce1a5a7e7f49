"""SQLAlchemy sessions for the write routes and the other sync routes."""

from __future__ import annotations

from sqlmodel import Session

from shared.core.db import get_engine


def database_session() -> Session:
    """A session for one request: `with database_session() as session:` inside a sync route.

    Not a dependency: FastAPI enters and leaves a sync generator dependency in worker threads
    of its own, two thread hand-overs per request on top of the route's. Read-only use never
    commits; write routes commit explicitly.
    """
    return Session(get_engine(), expire_on_commit=False)
