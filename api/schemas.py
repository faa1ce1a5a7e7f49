"""Response shapes that more than one route answers with; each model builds its own body."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel

from api.responses import utc_timestamp
from shared.core.models import Job, JobStatus, OutputSize


class JobError(BaseModel):
    """Why a job failed."""

    code: str
    message: str


class JobPublic(BaseModel):
    """A job as the API shows it."""

    id: uuid.UUID
    symbol: str
    status: JobStatus
    outputsize: OutputSize | None
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    not_before: str | None
    rows_written: int | None
    error: JobError | None
    detail: str | None

    @classmethod
    def from_job(cls, job: Job) -> JobPublic:
        """The public view of a job row (never any secret: the row holds none)."""
        error = None
        if job.error_code:
            error = JobError(code=job.error_code, message=job.error_message or "")
        return cls(
            id=job.id,
            symbol=job.symbol,
            status=job.status,
            outputsize=job.outputsize,
            attempts=job.attempts,
            created_at=utc_timestamp(job.created_at) or "",
            started_at=utc_timestamp(job.started_at),
            finished_at=utc_timestamp(job.finished_at),
            not_before=utc_timestamp(job.not_before),
            rows_written=job.rows_written,
            error=error,
            detail=job.detail,
        )

    def body(self) -> dict[str, Any]:
        """The JSON of this job, as the envelope's `data` carries it."""
        return self.model_dump(mode="json")
