"""exact row counts of financial_data per symbol, kept by triggers

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-26

`GET /api/financial_data` reports how many rows match. Without a date filter that count is
read here (one row per symbol) instead of scanning the whole table or a symbol's index range:
on 6.3 million rows an unfiltered count(*) took about a second per request. The triggers run
in the writing transaction, so the count is exact and in the same snapshot as the rows.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # No writer may slip between creating the triggers and the initial count.
    op.execute("LOCK TABLE financial_data IN SHARE MODE")
    op.create_table(
        'financial_data_counts',
        sa.Column('symbol', sa.String(length=15), nullable=False),
        sa.Column('rows', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('symbol'),
    )
    # Statement-level triggers see all rows of a statement at once (transition tables): one
    # count update per symbol and statement, not per row. Symbols are updated in sorted order
    # so that two multi-symbol writers cannot deadlock on these rows.
    op.execute(
        """
        CREATE FUNCTION financial_data_count_inserted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO financial_data_counts AS c (symbol, rows)
            SELECT symbol, count(*) FROM inserted GROUP BY symbol ORDER BY symbol
            ON CONFLICT (symbol) DO UPDATE SET rows = c.rows + EXCLUDED.rows;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION financial_data_count_deleted() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE financial_data_counts AS c SET rows = c.rows - d.n
            FROM (SELECT symbol, count(*) AS n FROM deleted GROUP BY symbol ORDER BY symbol) AS d
            WHERE c.symbol = d.symbol;
            RETURN NULL;
        END $$
        """
    )
    # A row trigger, because an UPDATE trigger with transition tables cannot be limited to
    # `UPDATE OF symbol`; upserts never set the symbol, so they never fire it.
    op.execute(
        """
        CREATE FUNCTION financial_data_count_moved() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE financial_data_counts SET rows = rows - 1 WHERE symbol = OLD.symbol;
            INSERT INTO financial_data_counts AS c (symbol, rows) VALUES (NEW.symbol, 1)
            ON CONFLICT (symbol) DO UPDATE SET rows = c.rows + 1;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION financial_data_count_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM financial_data_counts;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER financial_data_count_insert AFTER INSERT ON financial_data"
        " REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT"
        " EXECUTE FUNCTION financial_data_count_inserted()"
    )
    op.execute(
        "CREATE TRIGGER financial_data_count_delete AFTER DELETE ON financial_data"
        " REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT"
        " EXECUTE FUNCTION financial_data_count_deleted()"
    )
    op.execute(
        "CREATE TRIGGER financial_data_count_move AFTER UPDATE OF symbol ON financial_data"
        " FOR EACH ROW WHEN (OLD.symbol IS DISTINCT FROM NEW.symbol)"
        " EXECUTE FUNCTION financial_data_count_moved()"
    )
    op.execute(
        "CREATE TRIGGER financial_data_count_truncate AFTER TRUNCATE ON financial_data"
        " FOR EACH STATEMENT EXECUTE FUNCTION financial_data_count_truncated()"
    )
    op.execute(
        "INSERT INTO financial_data_counts (symbol, rows)"
        " SELECT symbol, count(*) FROM financial_data GROUP BY symbol"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER financial_data_count_truncate ON financial_data")
    op.execute("DROP TRIGGER financial_data_count_move ON financial_data")
    op.execute("DROP TRIGGER financial_data_count_delete ON financial_data")
    op.execute("DROP TRIGGER financial_data_count_insert ON financial_data")
    op.execute("DROP FUNCTION financial_data_count_truncated()")
    op.execute("DROP FUNCTION financial_data_count_moved()")
    op.execute("DROP FUNCTION financial_data_count_deleted()")
    op.execute("DROP FUNCTION financial_data_count_inserted()")
    op.drop_table('financial_data_counts')
