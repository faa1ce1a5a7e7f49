"""GET/PUT/DELETE /symbols over HTTP against real PostgreSQL and Redis, with no worker running."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import text
from sqlmodel import Session

from shared.core.market_calendar import last_completed_trading_day
from shared.core.models import utcnow
from shared.domain.prices import upsert_prices
from shared.domain.queue import QUEUE
from shared.domain.tracking import mark_failed, mark_refreshed, track
from tests.support import API_TOKEN, bar, history


def _queued_job_ids(client: redis.Redis) -> list[str]:  # type: ignore[type-arg]
    ids: list[str] = []
    for raw in client.lrange(QUEUE, 0, -1):
        args, _, _ = json.loads(base64.b64decode(json.loads(raw)["body"]))
        ids.extend(args)
    return ids


def _jobs(session: Session) -> list[dict[str, Any]]:
    rows = session.execute(
        text("SELECT id, symbol, status, source FROM jobs ORDER BY created_at")
    ).all()
    return [
        {"id": str(row.id), "symbol": row.symbol, "status": row.status, "source": row.source}
        for row in rows
    ]


def _iso_utc(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _current_day() -> str:
    return last_completed_trading_day(utcnow()).isoformat()


def test_get_symbols_lists_defaults_alphabetically_with_exact_coverage(
    api: httpx.Client, session: Session
) -> None:
    upsert_prices(
        session,
        "IBM",
        [
            bar("2023-01-03", "10.00", "20.10"),
            bar("2023-01-04", "10.00", "20.20"),
            bar("2023-01-06", "10.00", "20.30"),
        ],
    )
    upsert_prices(session, "MSFT", history(4))  # stored but untracked: not listed
    mark_refreshed(session, "IBM")
    session.commit()
    response = api.get("/symbols")
    assert response.status_code == 200
    body = response.json()
    assert body["info"] == {"error": ""}
    assert body["pagination"] == {"count": 2, "page": 1, "limit": 100, "pages": 1}
    aapl, ibm = body["data"]
    assert aapl == {
        "symbol": "AAPL",
        "tracked_since": aapl["tracked_since"],
        "first_date": None,
        "last_date": None,
        "rows": 0,
        "last_refreshed_at": None,
        "failure": None,
        "last_trading_day": _current_day(),
        "lagging": True,
    }
    assert ibm["symbol"] == "IBM"
    assert (ibm["first_date"], ibm["last_date"], ibm["rows"]) == ("2023-01-03", "2023-01-06", 3)
    assert abs(_iso_utc(ibm["last_refreshed_at"]) - utcnow()) < timedelta(minutes=1)
    assert abs(_iso_utc(ibm["tracked_since"]) - utcnow()) < timedelta(minutes=1)
    assert ibm["failure"] is None


def test_lagging_compares_the_last_stored_day_with_the_last_completed_trading_day(
    api: httpx.Client, session: Session
) -> None:
    current = last_completed_trading_day(utcnow())
    behind = current - timedelta(days=7)
    upsert_prices(session, "IBM", [bar(current.isoformat(), "10.00", "11.00")])
    upsert_prices(session, "AAPL", [bar(behind.isoformat(), "10.00", "11.00")])
    session.commit()
    listed = {item["symbol"]: item for item in api.get("/symbols").json()["data"]}
    assert listed["IBM"]["lagging"] is False
    assert listed["AAPL"]["lagging"] is True
    assert listed["AAPL"]["last_trading_day"] == current.isoformat()


def test_get_symbols_paginates(api: httpx.Client, session: Session) -> None:
    for symbol in ("MSFT", "BRK.B", "ZZ-1"):
        track(session, symbol)
    session.commit()
    first = api.get("/symbols", params={"limit": 2}).json()
    second = api.get("/symbols", params={"limit": 2, "page": 2}).json()
    third = api.get("/symbols", params={"limit": 2, "page": 3}).json()
    assert [item["symbol"] for item in first["data"]] == ["AAPL", "BRK.B"]
    assert [item["symbol"] for item in second["data"]] == ["IBM", "MSFT"]
    assert [item["symbol"] for item in third["data"]] == ["ZZ-1"]
    assert third["pagination"] == {"count": 5, "page": 3, "limit": 2, "pages": 3}
    beyond = api.get("/symbols", params={"limit": 2, "page": 9}).json()
    assert beyond["data"] == []
    assert beyond["pagination"] == {"count": 5, "page": 9, "limit": 2, "pages": 3}


def test_get_symbols_with_nothing_tracked_is_an_empty_page(
    api: httpx.Client, session: Session
) -> None:
    session.execute(text("DELETE FROM tracked_symbols"))
    session.commit()
    body = api.get("/symbols").json()
    assert body["data"] == []
    assert body["pagination"] == {"count": 0, "page": 1, "limit": 100, "pages": 0}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
    ],
)
def test_get_symbols_bad_paging_is_400_naming_the_parameter(
    api: httpx.Client, session: Session, params: dict[str, Any], name: str
) -> None:
    response = api.get("/symbols", params=params)
    assert response.status_code == 400
    assert response.json()["data"] == []
    assert f"'{name}'" in response.json()["info"]["error"]


def test_get_symbols_shows_a_parked_failure(api: httpx.Client, session: Session) -> None:
    retry_at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    mark_failed(
        session,
        "IBM",
        code="invalid_symbol",
        message="AlphaVantage does not know IBM.",
        retry_at=retry_at,
    )
    session.commit()
    ibm = api.get("/symbols/IBM").json()["data"]
    listed = api.get("/symbols").json()["data"][1]
    assert listed == ibm
    failure = ibm["failure"]
    assert failure["code"] == "invalid_symbol"
    assert failure["message"] == "AlphaVantage does not know IBM."
    assert failure["retry_at"] == "2030-01-02T03:04:05Z"
    assert abs(_iso_utc(failure["failed_at"]) - utcnow()) < timedelta(minutes=1)


def test_get_one_symbol_is_case_insensitive_and_404_when_untracked(
    api: httpx.Client, session: Session
) -> None:
    assert api.get("/symbols/ibm").json()["data"]["symbol"] == "IBM"
    missing = api.get("/symbols/MSFT")
    assert missing.status_code == 404
    assert missing.json() == {"data": None, "info": {"error": "Symbol MSFT is not tracked."}}


def test_put_new_symbol_is_201_and_starts_a_backfill_job(
    api: httpx.Client,
    auth: dict[str, str],
    session: Session,
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    response = api.put("/symbols/msft", headers=auth)
    assert response.status_code == 201
    assert response.headers["location"] == "/symbols/MSFT"
    body = response.json()
    assert body["info"] == {"error": ""}
    data = body["data"]
    assert (data["symbol"], data["rows"], data["first_date"], data["failure"]) == (
        "MSFT",
        0,
        None,
        None,
    )
    job = data["job"]
    assert (job["symbol"], job["status"]) == ("MSFT", "queued")
    assert _jobs(session) == [
        {"id": job["id"], "symbol": "MSFT", "status": "queued", "source": "api"}
    ]
    assert _queued_job_ids(empty_queue) == [job["id"]]
    assert api.get(f"/jobs/{job['id']}").json()["data"]["symbol"] == "MSFT"
    assert api.get(response.headers["location"]).json()["data"]["symbol"] == "MSFT"
    listed = [item["symbol"] for item in api.get("/symbols").json()["data"]]
    assert listed == ["AAPL", "IBM", "MSFT"]


def test_put_tracked_symbol_again_is_200_without_a_new_job(
    api: httpx.Client,
    auth: dict[str, str],
    session: Session,
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    first = api.put("/symbols/MSFT", headers=auth)
    second = api.put("/symbols/MSFT", headers=auth)
    assert (first.status_code, second.status_code) == (201, 200)
    assert "location" not in second.headers
    assert second.json()["data"]["job"] is None
    assert second.json()["data"]["tracked_since"] == first.json()["data"]["tracked_since"]
    assert len(_jobs(session)) == 1


def test_put_default_symbol_is_200_and_leaves_it_to_beat(
    api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    response = api.put("/symbols/IBM", headers=auth)
    assert response.status_code == 200
    assert response.json()["data"]["job"] is None
    assert _jobs(session) == []


def test_put_new_symbol_with_current_prices_starts_no_job(
    api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    upsert_prices(session, "MSFT", [bar("2023-01-03", "1", "2"), bar(_current_day(), "1", "2")])
    session.commit()
    response = api.put("/symbols/MSFT", headers=auth)
    assert response.status_code == 201
    data = response.json()["data"]
    assert (data["rows"], data["last_date"], data["job"]) == (2, _current_day(), None)
    assert _jobs(session) == []


def test_put_new_symbol_with_a_job_in_flight_returns_that_job(
    api: httpx.Client,
    auth: dict[str, str],
    session: Session,
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    posted = api.post("/jobs", json={"symbol": "MSFT"}, headers=auth).json()["data"]
    response = api.put("/symbols/MSFT", headers=auth)
    assert response.status_code == 201
    assert response.json()["data"]["job"]["id"] == posted["id"]
    assert len(_jobs(session)) == 1
    assert _queued_job_ids(empty_queue) == [posted["id"]]


def test_put_parked_symbol_clears_the_failure_and_retries_now(
    api: httpx.Client,
    auth: dict[str, str],
    session: Session,
    empty_queue: redis.Redis,  # type: ignore[type-arg]
) -> None:
    mark_failed(
        session,
        "IBM",
        code="invalid_symbol",
        message="gone",
        retry_at=utcnow() + timedelta(days=7),
    )
    session.commit()
    response = api.put("/symbols/IBM", headers=auth)
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["failure"] is None
    assert data["job"]["status"] == "queued"
    assert _jobs(session) == [
        {"id": data["job"]["id"], "symbol": "IBM", "status": "queued", "source": "api"}
    ]
    row = session.execute(
        text("SELECT failure_code, failed_at, retry_at FROM tracked_symbols WHERE symbol = 'IBM'")
    ).one()
    assert tuple(row) == (None, None, None)


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}]
)
def test_write_without_the_token_is_401_and_changes_nothing(
    api: httpx.Client, session: Session, method: str, headers: dict[str, str]
) -> None:
    response = api.request(
        method, "/symbols/IBM" if method == "DELETE" else "/symbols/MSFT", headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {"data": None, "info": {"error": "Missing or invalid bearer token."}}
    listed = [item["symbol"] for item in api.get("/symbols").json()["data"]]
    assert listed == ["AAPL", "IBM"]
    assert _jobs(session) == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
@pytest.mark.parametrize("symbol", ["IBM$", "A" * 16, "I_B_M", "%20"])
def test_invalid_symbol_is_400_naming_symbol(
    api: httpx.Client, auth: dict[str, str], session: Session, method: str, symbol: str
) -> None:
    response = api.request(method, f"/symbols/{symbol}", headers=auth)
    assert response.status_code == 400
    body = response.json()
    assert body["data"] is None
    assert "'symbol'" in body["info"]["error"]
    assert _jobs(session) == []
    assert len(api.get("/symbols").json()["data"]) == 2


def test_delete_untracks_and_keeps_the_prices(
    api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    upsert_prices(session, "IBM", history(5))
    session.commit()
    response = api.delete("/symbols/ibm", headers=auth)
    assert response.status_code == 200
    data = response.json()["data"]
    assert (data["symbol"], data["rows"]) == ("IBM", 5)
    assert response.json()["info"] == {"error": ""}
    assert [item["symbol"] for item in api.get("/symbols").json()["data"]] == ["AAPL"]
    prices = api.get("/api/financial_data", params={"symbol": "IBM"}).json()
    assert prices["pagination"]["count"] == 5
    assert api.get("/symbols/IBM").status_code == 404


def test_delete_untracked_symbol_is_404(
    api: httpx.Client, auth: dict[str, str], session: Session
) -> None:
    response = api.delete("/symbols/MSFT", headers=auth)
    assert response.status_code == 404
    assert response.json() == {"data": None, "info": {"error": "Symbol MSFT is not tracked."}}
    first = api.delete("/symbols/IBM", headers=auth)
    second = api.delete("/symbols/IBM", headers=auth)
    assert (first.status_code, second.status_code) == (200, 404)


def test_openapi_documents_the_symbol_routes(api: httpx.Client) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert set(paths["/symbols"]) == {"get"}
    assert set(paths["/symbols/{symbol}"]) == {"get", "put", "delete"}
    assert {"201", "200", "400", "401"} <= set(paths["/symbols/{symbol}"]["put"]["responses"])
    assert {"200", "400", "401", "404"} <= set(paths["/symbols/{symbol}"]["delete"]["responses"])
    assert paths["/symbols/{symbol}"]["put"]["security"]
