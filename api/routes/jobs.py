"""Refresh jobs: request one, watch it, list them."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import TokenDep
from api.errors import NotFound
from api.params import Limit, Page, Symbol
from api.responses import (
    READ_ERRORS,
    WRITE_ERRORS,
    Envelope,
    ListEnvelope,
    created_or_existing,
    error_doc,
    ok,
    ok_list,
)
from api.schemas import JobPublic
from api.sessions import database_session
from shared.core.models import JobStatus, OutputSize
from shared.domain.jobs.records import get_job, list_jobs
from shared.domain.queue import submit_job

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobRequest(BaseModel):
    """What to refresh."""

    model_config = ConfigDict(extra="forbid")

    symbol: Symbol
    outputsize: OutputSize | None = Field(
        default=None, description="Default: compact, or full when enabled and history is missing"
    )


# The POST's own 400 wording replaces the generic one in place: the order stays 400, 503, 401, 413.
_CREATE_ERRORS = WRITE_ERRORS | {
    400: error_doc("Invalid symbol or body"),
    413: error_doc("The body is larger than 64 KiB"),
}
_CREATE = created_or_existing(
    Envelope[JobPublic],
    created=202,
    existing="A job for the symbol is in flight",
    errors=_CREATE_ERRORS,
)


@router.post("", dependencies=[TokenDep], **_CREATE)
def create_refresh_job(request: JobRequest) -> JSONResponse:
    """Ask for a symbol to be refreshed; an in-flight job for it is returned instead."""
    with database_session() as session:
        result = submit_job(session, request.symbol, outputsize=request.outputsize, source="api")
    job = result.job
    return ok(
        JobPublic.from_job(job).body(),
        status_code=202 if result.created else 200,
        headers={"Location": f"/jobs/{job.id}"},
    )


@router.get(
    "/{job_id}",
    response_model=Envelope[JobPublic],
    responses={404: error_doc("No such job"), **READ_ERRORS},
)
def read_job(job_id: uuid.UUID) -> JSONResponse:
    """One job, as it is now."""
    with database_session() as session:
        job = get_job(session, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    return ok(JobPublic.from_job(job).body())


@router.get("", response_model=ListEnvelope[JobPublic], responses=READ_ERRORS)
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
    return ok_list(
        [JobPublic.from_job(job).body() for job in jobs], count=count, page=page, limit=limit
    )
