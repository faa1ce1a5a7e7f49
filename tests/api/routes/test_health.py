"""Liveness, readiness and metrics of the API."""

from __future__ import annotations

import httpx
from sqlmodel import Session

from shared.domain.jobs.records import create_job


def test_healthz_answers_while_the_process_runs(api: httpx.Client) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"data": {"status": "ok"}, "info": {"error": ""}}


def test_readyz_is_200_when_postgres_and_redis_answer(api: httpx.Client) -> None:
    response = api.get("/readyz")
    assert response.status_code == 200
    assert response.json()["data"] == {"postgres": "ok", "redis": "ok"}


def test_metrics_expose_jobs_by_status_and_http_traffic(
    api: httpx.Client, session: Session
) -> None:
    create_job(session, "IBM")
    session.commit()
    api.get("/api/financial_data")
    body = api.get("/metrics").text
    assert 'stockpile_jobs{status="queued"} 1.0' in body
    assert 'stockpile_jobs{status="failed"} 0.0' in body
    assert 'route="/api/financial_data"' in body
    assert "stockpile_alphavantage_budget_remaining" in body
