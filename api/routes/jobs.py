"""Refresh jobs: request one, watch it, list them."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import Limit, Page, Symbol, TokenDep, database_session
from api.errors import NotFound
from api.responses import (
    Envelope,
    ErrorEnvelope,
    ListEnvelope,
    Responses,
    ok,
    ok_list,
    utc_timestamp,
)
from shared.jobs import get_job, list_jobs
from shared.models import Job, JobStatus
from shared.queue import submit_job

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobRequest(BaseModel):
    """What to refresh."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    outputsize: Literal["compact", "full"] | None = Field(
        default=None, description="Default: compact, or full when enabled and history is missing"
    )


class JobError(BaseModel):
    """Why a job failed."""

    code: str
    message: str


class JobPublic(BaseModel):
    """A job as the API shows it."""

    id: uuid.UUID
    symbol: str
    status: JobStatus
    outputsize: str | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    not_before: str | None
    rows_written: int | None
    error: JobError | None
    detail: str | None


def job_json(job: Job) -> dict[str, object]:
    """The public JSON of a job (never any secret: the row holds none)."""
    return {
        "id": str(job.id),
        "symbol": job.symbol,
        "status": job.status,
        "outputsize": job.outputsize,
        "attempts": job.attempts,
        "created_at": utc_timestamp(job.created_at),
        "started_at": utc_timestamp(job.started_at),
        "finished_at": utc_timestamp(job.finished_at),
        "not_before": utc_timestamp(job.not_before),
        "rows_written": job.rows_written,
        "error": (
            {"code": job.error_code, "message": job.error_message or ""} if job.error_code else None
        ),
        "detail": job.detail,
    }


_READ_ERRORS: Responses = {
    400: {"model": ErrorEnvelope, "description": "A parameter is invalid; `info.error` names it"},
    503: {"model": ErrorEnvelope, "description": "The database is unavailable"},
}
_WRITE_ERRORS: Responses = {
    **_READ_ERRORS,
    400: {"model": ErrorEnvelope, "description": "Invalid symbol or body"},
    401: {"model": ErrorEnvelope, "description": "Missing or wrong bearer token"},
    413: {"model": ErrorEnvelope, "description": "The body is larger than 64 KiB"},
}


@router.post(
    "",
    status_code=202,
    response_model=Envelope[JobPublic],
    dependencies=[TokenDep],
    responses={
        200: {"model": Envelope[JobPublic], "description": "A job for the symbol is in flight"},
        **_WRITE_ERRORS,
    },
)
def create_refresh_job(request: JobRequest) -> JSONResponse:
    """Ask for a symbol to be refreshed; an in-flight job for it is returned instead."""
    with database_session() as session:
        result = submit_job(session, request.symbol, outputsize=request.outputsize, source="api")
    job = result.job
    return ok(
        job_json(job),
        status_code=202 if result.created else 200,
        headers={"Location": f"/jobs/{job.id}"},
    )


@router.get(
    "/{job_id}",
    response_model=Envelope[JobPublic],
    responses={404: {"model": ErrorEnvelope, "description": "No such job"}, **_READ_ERRORS},
)
def read_job(job_id: uuid.UUID) -> JSONResponse:
    """One job, as it is now."""
    with database_session() as session:
        job = get_job(session, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    return ok(job_json(job))


@router.get("", response_model=ListEnvelope[JobPublic], responses=_READ_ERRORS)
def read_jobs(
    status: Annotated[JobStatus | None, Query(description="Only jobs in this status")] = None,
    symbol: Annotated[Symbol | None, Query(description="Only jobs for this symbol")] = None,
    limit: Limit = 5,
    page: Page = 1,
) -> JSONResponse:
    """Jobs, newest first."""
    with database_session() as session:
        jobs, count = list_jobs(
            session, status=status, symbol=symbol, limit=limit, offset=(page - 1) * limit
        )
    return ok_list([job_json(job) for job in jobs], count=count, page=page, limit=limit)
