"""Tables (SQLModel) and the public shapes derived from them."""

from __future__ import annotations

import datetime as dt
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Enum,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

SYMBOL_MAX_LENGTH = 15


def _stored_as_value(enum: type[StrEnum], length: int) -> Enum:
    """A VARCHAR column holding the enum's values ("queued", not "QUEUED"), read back as members."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda members: [member.value for member in members],
    )


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _timestamp(*, nullable: bool = True, server_default: bool = False) -> Column[datetime]:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.now() if server_default else None,
    )


class FinancialData(SQLModel, table=True):
    """One trading day of raw, as-traded prices for one symbol."""

    __tablename__ = "financial_data"
    __table_args__ = (Index("ix_financial_data_date_symbol", "date", "symbol"),)

    symbol: str = Field(sa_column=Column(String(SYMBOL_MAX_LENGTH), primary_key=True))
    date: dt.date = Field(sa_column=Column(Date, primary_key=True))
    open_price: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    high_price: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    low_price: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    close_price: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    volume: int = Field(sa_column=Column(BigInteger, nullable=False))
    updated_at: datetime = Field(
        default_factory=utcnow, sa_column=_timestamp(nullable=False, server_default=True)
    )


class JobStatus(StrEnum):
    """Where a job is in its life."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class JobErrorCode(StrEnum):
    """Why a job failed (CONTRACT.md)."""

    INVALID_SYMBOL = "invalid_symbol"
    PREMIUM_REQUIRED = "premium_required"
    BAD_API_KEY = "bad_api_key"
    RATE_LIMITED = "rate_limited"
    UPSTREAM_ERROR = "upstream_error"
    BAD_RESPONSE = "bad_response"


class OutputSize(StrEnum):
    """AlphaVantage's history sizes: the latest 100 days, or 20+ years."""

    COMPACT = "compact"
    FULL = "full"


class Job(SQLModel, table=True):
    """A request to refresh one symbol; the single source of truth about that work."""

    __tablename__ = "jobs"
    __table_args__ = (
        # At most one in-flight job per symbol: concurrent requests collapse into one.
        Index(
            "uq_jobs_symbol_in_flight",
            "symbol",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index(
            "ix_jobs_due",
            "not_before",
            "created_at",
            postgresql_where=text("status = 'queued'"),
        ),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_symbol_created_at", "symbol", "created_at"),
        Index("ix_jobs_status_created_at", "status", "created_at"),
        Index(
            "ix_jobs_queued_dispatched_at",
            "dispatched_at",
            postgresql_where=text("status = 'queued'"),
        ),
        CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name="ck_jobs_status"
        ),
    )

    id: uuid.UUID = Field(
        default_factory=uuid.uuid4, sa_column=Column(UUID(as_uuid=True), primary_key=True)
    )
    symbol: str = Field(sa_column=Column(String(SYMBOL_MAX_LENGTH), nullable=False))
    outputsize: OutputSize | None = Field(
        default=None, sa_column=Column(_stored_as_value(OutputSize, 8))
    )
    status: JobStatus = Field(
        default=JobStatus.QUEUED, sa_column=Column(_stored_as_value(JobStatus, 16), nullable=False)
    )
    source: str = Field(default="api", sa_column=Column(String(16), nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_timestamp(nullable=False, server_default=True)
    )
    started_at: datetime | None = Field(default=None, sa_column=_timestamp())
    finished_at: datetime | None = Field(default=None, sa_column=_timestamp())
    not_before: datetime | None = Field(default=None, sa_column=_timestamp())
    dispatched_at: datetime | None = Field(default=None, sa_column=_timestamp())
    lease_expires_at: datetime | None = Field(default=None, sa_column=_timestamp())
    worker: str | None = Field(default=None, sa_column=Column(String(255)))
    rows_written: int | None = Field(default=None, sa_column=Column(Integer))
    error_code: str | None = Field(default=None, sa_column=Column(String(32)))
    error_message: str | None = Field(default=None, sa_column=Column(Text))
    detail: str | None = Field(default=None, sa_column=Column(Text))


class TrackedSymbol(SQLModel, table=True):
    """A symbol that beat keeps current every trading day."""

    __tablename__ = "tracked_symbols"

    symbol: str = Field(sa_column=Column(String(SYMBOL_MAX_LENGTH), primary_key=True))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=_timestamp(nullable=False, server_default=True)
    )
    last_refreshed_at: datetime | None = Field(default=None, sa_column=_timestamp())
    # A permanent failure (e.g. delisted) parks the symbol until retry_at instead of every minute.
    failure_code: str | None = Field(default=None, sa_column=Column(String(32)))
    failure_message: str | None = Field(default=None, sa_column=Column(Text))
    failed_at: datetime | None = Field(default=None, sa_column=_timestamp())
    retry_at: datetime | None = Field(default=None, sa_column=_timestamp())
    full_history_unavailable: bool = Field(default=False, nullable=False)


class ApiCall(SQLModel, table=True):
    """One AlphaVantage call, for auditing the budget and rebuilding the limiter."""

    __tablename__ = "api_calls"
    __table_args__ = (Index("ix_api_calls_called_at", "called_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, primary_key=True))
    called_at: datetime = Field(sa_column=_timestamp(nullable=False))
    symbol: str = Field(sa_column=Column(String(SYMBOL_MAX_LENGTH), nullable=False))
    outputsize: OutputSize = Field(
        sa_column=Column(_stored_as_value(OutputSize, 8), nullable=False)
    )
    job_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    outcome: str = Field(sa_column=Column(String(32), nullable=False))
    duration_ms: int | None = Field(default=None, sa_column=Column(Integer))


class RowTally(SQLModel, table=True):
    """A signed change of a count (jobs by status, calls by outcome), written by triggers.

    Writers only append; the count of a key is the sum of its deltas, and the retention task
    folds them into one row per key (migration 0005).
    """

    __tablename__ = "row_tallies"
    __table_args__ = (Index("ix_row_tallies_kind_key", "kind", "key"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    kind: str = Field(sa_column=Column(String(32), nullable=False))
    key: str = Field(sa_column=Column(String(32), nullable=False))
    delta: int = Field(sa_column=Column(BigInteger, nullable=False))
