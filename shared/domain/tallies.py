"""Exact row counts kept by triggers (migration 0005): jobs by status, calls by outcome.

Writers append signed deltas to `row_tallies` in their own transaction; a count is the sum of
its key's deltas, read in one statement, so it is exact in that statement's snapshot. Kinds:
`jobs` and `api_calls` (rows stored now), `jobs_deleted` and `api_calls_deleted` (rows the
retention task removed: added to the stored ones, they give totals that never go down).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session

JOBS = "jobs"
API_CALLS = "api_calls"
JOBS_DELETED = "jobs_deleted"
API_CALLS_DELETED = "api_calls_deleted"


def tallies(session: Session, *kinds: str) -> dict[str, dict[str, int]]:
    """kind -> key -> count, for the given kinds (absent keys are 0)."""
    rows = session.execute(
        text(
            "SELECT kind, key, sum(delta) FROM row_tallies"
            " WHERE kind = ANY(:kinds) GROUP BY kind, key"
        ),
        {"kinds": list(kinds)},
    ).all()
    counts: dict[str, dict[str, int]] = {kind: {} for kind in kinds}
    for kind, key, total in rows:
        counts[kind][key] = int(total)
    return counts


def stored_jobs(session: Session, status: str | None) -> int:
    """How many jobs are stored now, in `status` or in all."""
    by_status = tallies(session, JOBS)[JOBS]
    return by_status.get(status, 0) if status is not None else sum(by_status.values())


def compact_tallies(session: Session) -> int:
    """Fold every key's deltas into one row; how many rows were folded. The caller commits.

    Writers only insert, and this deletes only the rows its snapshot sees, so neither waits
    for the other and no delta is lost or counted twice.
    """
    folded = session.execute(
        text(
            """
            WITH old AS (DELETE FROM row_tallies RETURNING kind, key, delta),
            folded AS (
                INSERT INTO row_tallies (kind, key, delta)
                SELECT kind, key, sum(delta) FROM old GROUP BY kind, key
                HAVING sum(delta) <> 0
            )
            SELECT count(*) FROM old
            """
        )
    ).scalar_one()
    return int(folded)
