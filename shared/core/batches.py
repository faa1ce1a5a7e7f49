"""Batches of rows taken once: the first rows of a query, locked, in a MATERIALIZED CTE."""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, BindParameter, ColumnElement, Select, Table, bindparam, delete, select


def locked_batch(query: Select[Any], *, name: str, size: BindParameter[int]) -> CTE:
    """`query`'s first `size` rows, locked `FOR UPDATE SKIP LOCKED`, as the CTE `name`.

    Lock and limit in a materialized CTE, run once: a LIMIT inside `WHERE id IN (...)` may be
    evaluated again by the plan (a rescan, or a re-check of a row updated meanwhile) and yield
    more than `size` rows. A row another transaction holds is skipped, never waited for.
    """
    return query.limit(size).with_for_update(skip_locked=True).cte(name).prefix_with("MATERIALIZED")


def deleted_batch(table: Table, *where: ColumnElement[bool], oldest_first: Any, key: Any) -> CTE:
    """The CTE `gone`: deletes the first :batch rows of `table` (by `id`) that match `where`,
    in the order of `oldest_first`, and returns each deleted row's `key` column as `key`."""
    doomed = locked_batch(
        select(table.c.id).where(*where).order_by(oldest_first),
        name="doomed",
        size=bindparam("batch"),
    )
    return delete(table).where(table.c.id == doomed.c.id).returning(key.label("key")).cte("gone")
