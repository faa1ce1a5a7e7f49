"""exact counts of jobs by status and calls by outcome, kept by triggers; scale indexes

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

A year at 10,000 symbols is 3.65 million jobs and as many audited calls. `GET /jobs` counted its
matches and `/metrics` counted both tables on every request: a whole-table scan each time. The
counts now live in `row_tallies`, kept in the writing transaction by triggers, so they are exact
and in the same snapshot as the rows. Writers only ever INSERT a signed delta there (never update
a shared counter row), so no writer waits for another; the retention task folds the deltas into
one row per key (`shared/domain/tallies.compact_tallies`). The retention task also adds what it deletes
under `jobs_deleted` / `api_calls_deleted`, so totals in `/metrics` never go down (a TRUNCATE,
an operator's reset, clears both).

The job triggers fire on INSERT, DELETE and `UPDATE OF status` only: the heartbeat's lease
renewals (every 5 s per running job) set `lease_expires_at` alone and fire nothing.

The indexes serve the request paths and the dispatcher's tick at scale (docs/architecture.md,
"A year at 10,000 symbols"): by status and age (the listing by status, due queued jobs oldest
first, running jobs for the lease check without reading every queued job) and jobs sent to the
broker recently. None is on `lease_expires_at`: renewals change it every 5 s and would stop
being HOT updates.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column whose values are counted); the tally kind is the table name.
_COUNTED = (('jobs', 'status'), ('api_calls', 'outcome'))


def _create_triggers(table: str, column: str) -> None:
    for name, sign in (('inserted', ''), ('deleted', '-')):
        op.execute(
            f"""
            CREATE FUNCTION {table}_tally_{name}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO row_tallies (kind, key, delta)
                SELECT '{table}', {column}, {sign}count(*) FROM {name} GROUP BY {column};
                RETURN NULL;
            END $$
            """
        )
    # A row trigger: an UPDATE trigger with transition tables cannot be limited to `UPDATE OF`.
    op.execute(
        f"""
        CREATE FUNCTION {table}_tally_moved() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO row_tallies (kind, key, delta)
            VALUES ('{table}', OLD.{column}, -1), ('{table}', NEW.{column}, 1);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"""
        CREATE FUNCTION {table}_tally_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM row_tallies WHERE kind IN ('{table}', '{table}_deleted');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        f"CREATE TRIGGER {table}_tally_insert AFTER INSERT ON {table}"
        " REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT"
        f" EXECUTE FUNCTION {table}_tally_inserted()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_tally_delete AFTER DELETE ON {table}"
        " REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT"
        f" EXECUTE FUNCTION {table}_tally_deleted()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_tally_move AFTER UPDATE OF {column} ON {table}"
        f" FOR EACH ROW WHEN (OLD.{column} IS DISTINCT FROM NEW.{column})"
        f" EXECUTE FUNCTION {table}_tally_moved()"
    )
    op.execute(
        f"CREATE TRIGGER {table}_tally_truncate AFTER TRUNCATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION {table}_tally_truncated()"
    )
    op.execute(
        f"INSERT INTO row_tallies (kind, key, delta)"
        f" SELECT '{table}', {column}, count(*) FROM {table} GROUP BY {column}"
    )


def upgrade() -> None:
    # No writer may slip between creating the triggers and the initial counts.
    op.execute("LOCK TABLE jobs, api_calls IN SHARE MODE")
    op.create_table(
        'row_tallies',
        sa.Column('id', sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('key', sa.String(length=32), nullable=False),
        sa.Column('delta', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_row_tallies_kind_key', 'row_tallies', ['kind', 'key'])
    for table, column in _COUNTED:
        _create_triggers(table, column)
    op.create_index('ix_jobs_status_created_at', 'jobs', ['status', 'created_at'])
    op.create_index(
        'ix_jobs_queued_dispatched_at',
        'jobs',
        ['dispatched_at'],
        postgresql_where=sa.text("status = 'queued'"),
    )


def downgrade() -> None:
    op.drop_index('ix_jobs_queued_dispatched_at', table_name='jobs')
    op.drop_index('ix_jobs_status_created_at', table_name='jobs')
    for table, _column in reversed(_COUNTED):
        for event in ('truncate', 'move', 'delete', 'insert'):
            op.execute(f"DROP TRIGGER {table}_tally_{event} ON {table}")
        for what in ('truncated', 'moved', 'deleted', 'inserted'):
            op.execute(f"DROP FUNCTION {table}_tally_{what}()")
    op.drop_index('ix_row_tallies_kind_key', table_name='row_tallies')
    op.drop_table('row_tallies')
