"""Tracked symbols: what beat keeps current, with what is stored for each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.auth import TokenDep
from api.errors import NotFound
from api.params import Limit, Page, Symbol
from api.responses import (
    READ_ERRORS,
    WRITE_ERRORS,
    Envelope,
    ListEnvelope,
    Responses,
    created_or_existing,
    error_doc,
    ok,
    ok_list,
    utc_timestamp,
)
from api.schemas import JobPublic
from api.sessions import database_session
from shared.core.market_calendar import last_completed_trading_day
from shared.core.models import utcnow
from shared.domain.queue import submit_job
from shared.domain.tracking import Coverage, get_tracked, list_tracked, start_tracking, untrack

router = APIRouter(prefix="/symbols", tags=["symbols"])

PathSymbol = Annotated[Symbol, Path(description="Ticker, case-insensitive")]


class Failure(BaseModel):
    """Why refreshing a symbol is parked, and when beat tries it again."""

    code: str
    message: str
    failed_at: str | None
    retry_at: str | None


class SymbolCoverage(BaseModel):
    """A tracked symbol and what is stored for it."""

    symbol: str
    tracked_since: str
    first_date: str | None
    last_date: str | None
    rows: int
    last_refreshed_at: str | None
    failure: Failure | None
    last_trading_day: str = Field(
        description="The newest NYSE trading day whose daily bar is final (close + 30 min)"
    )
    lagging: bool = Field(description="Whether `last_date` is missing or before `last_trading_day`")

    @classmethod
    def from_coverage(cls, coverage: Coverage) -> SymbolCoverage:
        """The public view of a tracked symbol, with whether its data lags the market."""
        last_trading_day = last_completed_trading_day(utcnow())
        failure = None
        if coverage.failure_code is not None:
            failure = Failure(
                code=coverage.failure_code,
                message=coverage.failure_message or "",
                failed_at=utc_timestamp(coverage.failed_at),
                retry_at=utc_timestamp(coverage.retry_at),
            )
        return cls(
            symbol=coverage.symbol,
            tracked_since=utc_timestamp(coverage.tracked_since) or "",
            first_date=coverage.first_date.isoformat() if coverage.first_date else None,
            last_date=coverage.last_date.isoformat() if coverage.last_date else None,
            rows=coverage.rows,
            last_refreshed_at=utc_timestamp(coverage.last_refreshed_at),
            failure=failure,
            last_trading_day=last_trading_day.isoformat(),
            lagging=coverage.last_date is None or coverage.last_date < last_trading_day,
        )

    def body(self) -> dict[str, Any]:
        """The JSON of this symbol, as the envelope's `data` carries it."""
        return self.model_dump(mode="json")


class TrackedSymbol(SymbolCoverage):
    """A symbol just tracked, with the refresh job started for it (null when none was needed)."""

    job: JobPublic | None


_NOT_TRACKED: Responses = {404: error_doc("Not tracked")}
_TRACK = created_or_existing(
    Envelope[TrackedSymbol],
    created=201,
    existing="Already tracked (a parked failure is cleared and retried)",
)


def _not_tracked(symbol: str) -> NotFound:
    return NotFound(f"Symbol {symbol} is not tracked.")


@router.get("", response_model=ListEnvelope[SymbolCoverage], responses=READ_ERRORS)
def read_symbols(limit: Limit = 100, page: Page = 1) -> JSONResponse:
    """Tracked symbols in alphabetical order, with their stored range and refresh state."""
    with database_session() as session:
        tracked, count = list_tracked(session, limit=limit, offset=(page - 1) * limit)
    return ok_list(
        [SymbolCoverage.from_coverage(c).body() for c in tracked],
        count=count,
        page=page,
        limit=limit,
    )


@router.get(
    "/{symbol}",
    response_model=Envelope[SymbolCoverage],
    responses={**READ_ERRORS, **_NOT_TRACKED},
)
def read_symbol(symbol: PathSymbol) -> JSONResponse:
    """One tracked symbol."""
    with database_session() as session:
        coverage = get_tracked(session, symbol)
    if coverage is None:
        raise _not_tracked(symbol)
    return ok(SymbolCoverage.from_coverage(coverage).body())


@router.put("/{symbol}", dependencies=[TokenDep], **_TRACK)
def track_symbol(symbol: PathSymbol) -> JSONResponse:
    """Track a symbol; when its stored prices lag, a refresh job starts right away."""
    with database_session() as session:
        result = start_tracking(session, symbol, now=utcnow())
        job = None
        if result.needs_refresh:
            # Commits the tracking change together with the job, so beat never sees one alone.
            job = submit_job(session, symbol, outputsize=None, source="api").job
        else:
            session.commit()
        coverage = get_tracked(session, symbol)
    if coverage is None:  # untracked by a concurrent DELETE in between
        raise _not_tracked(symbol)
    return ok(
        TrackedSymbol(
            **dict(SymbolCoverage.from_coverage(coverage)),
            job=JobPublic.from_job(job) if job is not None else None,
        ).body(),
        status_code=201 if result.created else 200,
        headers={"Location": f"/symbols/{symbol}"} if result.created else None,
    )


@router.delete(
    "/{symbol}",
    response_model=Envelope[SymbolCoverage],
    dependencies=[TokenDep],
    responses={**WRITE_ERRORS, **_NOT_TRACKED},
)
def untrack_symbol(symbol: PathSymbol) -> JSONResponse:
    """Stop tracking a symbol; its stored prices stay. Answers with what it was."""
    with database_session() as session:
        coverage = get_tracked(session, symbol)
        if coverage is None or not untrack(session, symbol):
            raise _not_tracked(symbol)
        session.commit()
    return ok(SymbolCoverage.from_coverage(coverage).body())
