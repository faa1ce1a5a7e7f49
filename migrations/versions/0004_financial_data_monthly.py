"""exact monthly sums of financial_data per symbol, kept by triggers

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

`GET /api/statistics` averages a symbol's days over a range. Daily refreshes append one row per
tracked symbol and day, so a symbol's rows end up one per heap page, and a 10-year average read
about 2,600 pages. Here each symbol has one row per month with its day count and exact sums
(numeric, no rounding); the statistics add the whole months of a range from here and read only
the days of the two partial months at its edges. The triggers run in the writing transaction, so
the sums are exact and in the same snapshot as the rows (docs/benchmarks.md, "Statistics").
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# One signed contribution per row: +1 and its values for a new row, -1 and minus its values for
# a removed one; an update is both. Summed per symbol and month, sorted so that two writers of
# several symbols lock the same rows in the same order (no deadlock).
_SUMS = """
    INSERT INTO financial_data_monthly AS m
        (symbol, month, days, open_sum, close_sum, volume_sum)
    SELECT symbol, date_trunc('month', date)::date, sum(days), sum(open_price),
           sum(close_price), sum(volume)
    FROM ({changes}) AS c (symbol, date, days, open_price, close_price, volume)
    GROUP BY 1, 2
    ORDER BY 1, 2
"""
_APPLY = _SUMS + """
    ON CONFLICT (symbol, month) DO UPDATE SET
        days = m.days + EXCLUDED.days,
        open_sum = m.open_sum + EXCLUDED.open_sum,
        close_sum = m.close_sum + EXCLUDED.close_sum,
        volume_sum = m.volume_sum + EXCLUDED.volume_sum
"""
_ADDED = "SELECT symbol, date, 1, open_price, close_price, volume::numeric FROM {table}"
_REMOVED = "SELECT symbol, date, -1, -open_price, -close_price, -volume::numeric FROM {table}"


def _function(name: str, changes: str) -> str:
    return f"""
        CREATE FUNCTION {name}() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            {_APPLY.format(changes=changes)};
            RETURN NULL;
        END $$
    """


def upgrade() -> None:
    # No writer may slip between creating the triggers and the initial sums.
    op.execute("LOCK TABLE financial_data IN SHARE MODE")
    # The sums ride in the primary key's index (INCLUDE): a range of months is an index-only
    # scan, a few leaf pages for 25 years, wherever the table's rows lie.
    op.execute(
        """
        CREATE TABLE financial_data_monthly (
            symbol varchar(15) NOT NULL,
            month date NOT NULL,
            days integer NOT NULL,
            open_sum numeric NOT NULL,
            close_sum numeric NOT NULL,
            volume_sum numeric NOT NULL,
            CONSTRAINT financial_data_monthly_pkey PRIMARY KEY (symbol, month)
                INCLUDE (days, open_sum, close_sum, volume_sum)
        )
        """
    )
    # Statement-level triggers see all rows of a statement at once (transition tables): one
    # update per symbol and month, not per row. An upsert fires the insert trigger for its new
    # rows and the update trigger for the rows it changed.
    op.execute(_function("financial_data_monthly_inserted", _ADDED.format(table="inserted")))
    op.execute(_function("financial_data_monthly_deleted", _REMOVED.format(table="deleted")))
    op.execute(
        _function(
            "financial_data_monthly_updated",
            _ADDED.format(table="updated") + " UNION ALL " + _REMOVED.format(table="replaced"),
        )
    )
    op.execute(
        """
        CREATE FUNCTION financial_data_monthly_truncated() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM financial_data_monthly;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER financial_data_monthly_insert AFTER INSERT ON financial_data"
        " REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT"
        " EXECUTE FUNCTION financial_data_monthly_inserted()"
    )
    op.execute(
        "CREATE TRIGGER financial_data_monthly_delete AFTER DELETE ON financial_data"
        " REFERENCING OLD TABLE AS deleted FOR EACH STATEMENT"
        " EXECUTE FUNCTION financial_data_monthly_deleted()"
    )
    op.execute(
        "CREATE TRIGGER financial_data_monthly_update AFTER UPDATE ON financial_data"
        " REFERENCING OLD TABLE AS replaced NEW TABLE AS updated FOR EACH STATEMENT"
        " EXECUTE FUNCTION financial_data_monthly_updated()"
    )
    op.execute(
        "CREATE TRIGGER financial_data_monthly_truncate AFTER TRUNCATE ON financial_data"
        " FOR EACH STATEMENT EXECUTE FUNCTION financial_data_monthly_truncated()"
    )
    op.execute(_SUMS.format(changes=_ADDED.format(table="financial_data")))


def downgrade() -> None:
    for event in ("truncate", "update", "delete", "insert"):
        op.execute(f"DROP TRIGGER financial_data_monthly_{event} ON financial_data")
    for change in ("truncated", "updated", "deleted", "inserted"):
        op.execute(f"DROP FUNCTION financial_data_monthly_{change}()")
    op.drop_table('financial_data_monthly')
