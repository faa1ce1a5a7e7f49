"""POST /jobs, GET /jobs/{id}, GET /jobs over HTTP, with no worker consuming the queue."""

from __future__ import annotations

import base64
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from sqlmodel import Session

from shared.domain.jobs.records import create_job
from shared.domain.queue import QUEUE
from tests.support import API_TOKEN, FAKE_API_KEY


def _queued_messages(client: redis.Redis) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]


def test_post_job_is_202_with_location_and_a_queued_job(
    api: httpx.Client,
    auth: dict[str, str],
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    response = api.post("/jobs", json={"symbol": "ibm"}, headers=auth)
    assert response.status_code == 202
    job = response.json()["data"]
    assert response.headers["location"] == f"/jobs/{job['id']}"
    assert response.json()["info"] == {"error": ""}
    assert job["symbol"] == "IBM"
    assert job["status"] == "queued"
    assert job["attempts"] == 0
    assert job["started_at"] is job["finished_at"] is job["rows_written"] is job["error"] is None
    assert job["created_at"].endswith("Z")
    fetched = api.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json()["data"]["id"] == job["id"]


def test_post_job_sends_only_the_job_id_to_the_broker(
    api: httpx.Client,
    auth: dict[str, str],
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    job_id = api.post("/jobs", json={"symbol": "AAPL"}, headers=auth).json()["data"]["id"]
    messages = _queued_messages(empty_queue)
    assert len(messages) == 1
    message = messages[0]
    assert message["headers"]["task"] == "stockpile.run_job"
    args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
    assert (args, kwargs) == ([job_id], {})
    raw = json.dumps(message) + base64.b64decode(message["body"]).decode()
    assert FAKE_API_KEY not in raw
    assert API_TOKEN not in raw


def test_post_job_while_one_is_in_flight_returns_it_with_200(
    api: httpx.Client,
    auth: dict[str, str],
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    first = api.post("/jobs", json={"symbol": "IBM"}, headers=auth)
    second = api.post("/jobs", json={"symbol": "ibm", "outputsize": "full"}, headers=auth)
    assert (first.status_code, second.status_code) == (202, 200)
    assert second.json()["data"]["id"] == first.json()["data"]["id"]
    assert second.headers["location"] == first.headers["location"]
    assert len(_queued_messages(empty_queue)) == 1


def test_concurrent_posts_for_one_symbol_make_one_job(
    api_url: str,
    auth: dict[str, str],
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            return client.post("/jobs", json={"symbol": "MSFT"}, headers=auth)

    with ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(post, range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 19 + [202]
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    assert len(_queued_messages(empty_queue)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": "IBM$"},
        {"symbol": ""},
        {"symbol": "A" * 16},
        {"symbol": 42},
        {},
        {"symbol": "IBM", "outputsize": "huge"},
        {"symbol": "IBM", "priority": 1},
        [],
    ],
)
def test_post_job_with_a_bad_body_is_400(
    api: httpx.Client, auth: dict[str, str], body: object, session: Session
) -> None:
    response = api.post("/jobs", json=body, headers=auth)
    assert response.status_code == 400
    assert response.json()["data"] is None
    assert response.json()["info"]["error"]


def test_post_job_with_malformed_json_is_400(
    api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    response = api.post(
        "/jobs", content=b'{"symbol": "IB', headers={**auth, "Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in response.json()["info"]["error"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {API_TOKEN}"},
        {"Authorization": f"Bearer {API_TOKEN}x"},
        {"Authorization": "Bearer"},
    ],
)
def test_post_job_without_the_right_token_is_401(
    api: httpx.Client, headers: dict[str, str], session: Session
) -> None:
    response = api.post("/jobs", json={"symbol": "IBM"}, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"data": None, "info": {"error": "Missing or invalid bearer token."}}
    assert api.get("/jobs").json()["pagination"]["count"] == 0


def test_unknown_job_is_404_and_a_malformed_id_is_400(api: httpx.Client) -> None:
    missing = api.get(f"/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["data"] is None
    malformed = api.get("/jobs/not-a-uuid")
    assert malformed.status_code == 400
    assert "job_id" in malformed.json()["info"]["error"]


def test_list_jobs_newest_first_with_filters_and_pagination(
    api: httpx.Client, session: Session
) -> None:
    for symbol in ("AAA", "BBB", "CCC"):
        create_job(session, symbol)
        session.commit()
    _, listing = (
        api.get("/jobs", params={"limit": 2}).status_code,
        api.get("/jobs", params={"limit": 2}).json(),
    )
    assert [job["symbol"] for job in listing["data"]] == ["CCC", "BBB"]
    assert listing["pagination"] == {"count": 3, "page": 1, "limit": 2, "pages": 2}
    page2 = api.get("/jobs", params={"limit": 2, "page": 2}).json()
    assert [job["symbol"] for job in page2["data"]] == ["AAA"]
    by_symbol = api.get("/jobs", params={"symbol": "bbb"}).json()
    assert [job["symbol"] for job in by_symbol["data"]] == ["BBB"]
    assert api.get("/jobs", params={"status": "failed"}).json()["pagination"]["count"] == 0
    assert api.get("/jobs", params={"status": "queued"}).json()["pagination"]["count"] == 3
    bad = api.get("/jobs", params={"status": "lost"})
    assert bad.status_code == 400
    assert bad.json()["data"] == []
    assert "status" in bad.json()["info"]["error"]


def test_job_json_holds_no_secret(
    api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    api.post("/jobs", json={"symbol": "IBM"}, headers=auth)
    body = api.get("/jobs").text
    assert FAKE_API_KEY not in body
    assert API_TOKEN not in body
