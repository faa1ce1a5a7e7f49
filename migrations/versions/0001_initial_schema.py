"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26

Prices, jobs, tracked symbols (IBM and AAPL on a new installation) and the AlphaVantage call audit.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('api_calls',
    sa.Column('id', sa.BigInteger(), nullable=False),
    sa.Column('called_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('symbol', sa.String(length=15), nullable=False),
    sa.Column('outputsize', sa.String(length=8), nullable=False),
    sa.Column('job_id', sa.UUID(), nullable=True),
    sa.Column('outcome', sa.String(length=32), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_api_calls_called_at', 'api_calls', ['called_at'], unique=False)
    op.create_table('financial_data',
    sa.Column('symbol', sa.String(length=15), nullable=False),
    sa.Column('date', sa.Date(), nullable=False),
    sa.Column('open_price', sa.Numeric(), nullable=False),
    sa.Column('high_price', sa.Numeric(), nullable=False),
    sa.Column('low_price', sa.Numeric(), nullable=False),
    sa.Column('close_price', sa.Numeric(), nullable=False),
    sa.Column('volume', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('symbol', 'date')
    )
    op.create_index('ix_financial_data_date_symbol', 'financial_data', ['date', 'symbol'], unique=False)
    op.create_table('jobs',
    sa.Column('id', sa.UUID(), nullable=False),
    sa.Column('symbol', sa.String(length=15), nullable=False),
    sa.Column('outputsize', sa.String(length=8), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('not_before', sa.DateTime(timezone=True), nullable=True),
    sa.Column('dispatched_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lease_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('worker', sa.String(length=255), nullable=True),
    sa.Column('rows_written', sa.Integer(), nullable=True),
    sa.Column('error_code', sa.String(length=32), nullable=True),
    sa.Column('error_message', sa.Text(), nullable=True),
    sa.Column('detail', sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed')", name='ck_jobs_status'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_jobs_created_at', 'jobs', ['created_at'], unique=False)
    op.create_index('ix_jobs_due', 'jobs', ['not_before', 'created_at'], unique=False, postgresql_where=sa.text("status = 'queued'"))
    op.create_index('ix_jobs_symbol_created_at', 'jobs', ['symbol', 'created_at'], unique=False)
    op.create_index('uq_jobs_symbol_in_flight', 'jobs', ['symbol'], unique=True, postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.create_table('tracked_symbols',
    sa.Column('symbol', sa.String(length=15), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('last_refreshed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failure_code', sa.String(length=32), nullable=True),
    sa.Column('failure_message', sa.Text(), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('retry_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('full_history_unavailable', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.PrimaryKeyConstraint('symbol')
    )
    op.execute("INSERT INTO tracked_symbols (symbol) VALUES ('IBM'), ('AAPL')")


def downgrade() -> None:
    op.drop_table('tracked_symbols')
    op.drop_index('uq_jobs_symbol_in_flight', table_name='jobs', postgresql_where=sa.text("status IN ('queued', 'running')"))
    op.drop_index('ix_jobs_symbol_created_at', table_name='jobs')
    op.drop_index('ix_jobs_due', table_name='jobs', postgresql_where=sa.text("status = 'queued'"))
    op.drop_index('ix_jobs_created_at', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index('ix_financial_data_date_symbol', table_name='financial_data')
    op.drop_table('financial_data')
    op.drop_index('ix_api_calls_called_at', table_name='api_calls')
    op.drop_table('api_calls')
