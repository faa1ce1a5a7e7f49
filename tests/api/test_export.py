"""GET /api/financial_data.csv: the bulk export, streamed from PostgreSQL, over real HTTP."""

from __future__ import annotations

import asyncio
import csv
import io
import socket
import time
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import pytest
from sqlalchemy import text
from sqlmodel import Session

from api.deps import EXPORTS_AT_ONCE, ExportConnections
from api.errors import ServiceUnavailable
from shared.db import CONNECT_TIMEOUT_SECONDS
from shared.prices import upsert_prices
from tests.support import bar, history, wait_until

HEADER = ["symbol", "date", "open_price", "high_price", "low_price", "close_price", "volume"]
LISTED = ["symbol", "date", "open_price", "close_price", "volume"]


@pytest.fixture
def stored(session: Session) -> None:
    """IBM and AAPL over 1,200 weekdays, MSFT on three known days."""
    upsert_prices(session, "IBM", history(1200))
    upsert_prices(session, "AAPL", history(1100)[100:])
    upsert_prices(
        session,
        "MSFT",
        [
            bar("2001-03-05", "125.0700", "170.1000", 112117500),
            bar("2001-03-06", "0.1234", "100", 5),
            bar("2001-03-07", "10.015", "20", 0),
        ],
    )
    session.commit()


def _export(api: httpx.Client, **params: str) -> httpx.Response:
    return api.get("/api/financial_data.csv", params=params)


def _listing(api: httpx.Client, **params: str) -> list[list[str]]:
    rows: list[list[str]] = []
    page = 1
    while True:
        body = api.get("/api/financial_data", params={**params, "limit": 1000, "page": page})
        assert body.status_code == 200
        data = body.json()["data"]
        rows += [[item[name] for name in LISTED] for item in data]
        if len(data) < 1000:
            return rows
        page += 1


def _csv(response: httpx.Response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.text)))


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"symbol": "ibm"},
        {"symbol": "AAPL", "start_date": "2001-01-01"},
        {"start_date": "2001-03-01", "end_date": "2001-03-31"},
        {"end_date": "2000-06-30"},
        {"symbol": "MSFT", "start_date": "2001-03-06", "end_date": "2001-03-06"},
    ],
)
def test_export_rows_equal_the_listing_rows_for_the_same_filters(
    api: httpx.Client, params: dict[str, str]
) -> None:
    response = _export(api, **params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    header, *rows = _csv(response)
    assert header == HEADER
    listed = _listing(api, **params)
    assert listed  # every case matches something
    assert [[row[0], row[1], row[2], row[5], row[6]] for row in rows] == listed


@pytest.mark.usefixtures("stored")
def test_export_shows_every_price_as_the_listing_formats_it(api: httpx.Client) -> None:
    response = _export(api, symbol="MSFT")
    # bar() sets high = max(open, close), low = min(open, close).
    assert response.text == (
        "symbol,date,open_price,high_price,low_price,close_price,volume\n"
        "MSFT,2001-03-05,125.07,170.10,125.07,170.10,112117500\n"
        "MSFT,2001-03-06,0.1234,100.00,0.1234,100.00,5\n"
        "MSFT,2001-03-07,10.015,20.00,10.015,20.00,0\n"
    )


@pytest.mark.usefixtures("stored")
def test_export_of_an_unknown_symbol_is_the_header_line(api: httpx.Client) -> None:
    response = _export(api, symbol="NOPE")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.text == ",".join(HEADER) + "\n"


@pytest.mark.usefixtures("stored")
def test_export_of_an_empty_range_is_the_header_line(api: httpx.Client) -> None:
    response = _export(api, start_date="1999-01-01", end_date="1999-12-31")
    assert (response.status_code, response.text) == (200, ",".join(HEADER) + "\n")


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"start_date": "2023-02-30"}, "start_date"),
        ({"start_date": "20230101"}, "start_date"),
        ({"end_date": "2023-13-01"}, "end_date"),
        ({"end_date": "yesterday"}, "end_date"),
        ({"start_date": "2023-01-05", "end_date": "2023-01-04"}, "start_date"),
        ({"symbol": "IBM'; DROP TABLE financial_data;--"}, "symbol"),
        ({"symbol": "A" * 16}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "ÍBM"}, "symbol"),
    ],
)
def test_export_bad_parameter_is_400_in_the_json_envelope(
    api: httpx.Client, params: dict[str, str], name: str
) -> None:
    response = _export(api, **params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert body["data"] is None
    assert name in body["info"]["error"]


def _backends(session: Session) -> tuple[int, int]:
    """Connections to the test database other than this one, and how many of them run a COPY."""
    session.rollback()  # a fresh snapshot of pg_stat_activity
    connections, copying = session.execute(
        text(
            "SELECT count(*), count(*) FILTER (WHERE state = 'active' AND query LIKE 'COPY (%')"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        )
    ).one()
    return int(connections), int(copying)


def test_a_client_leaving_mid_export_frees_its_database_connection(
    api_url: str, session: Session
) -> None:
    # 500,000 rows (about 25 MB of CSV): far more than the socket buffers hold, so the COPY
    # is still running when the client stops reading.
    session.execute(
        text(
            "INSERT INTO financial_data"
            " (symbol, date, open_price, high_price, low_price, close_price, volume)"
            " SELECT 'S' || s, DATE '1990-01-01' + d, 100.5, 101.25, 99.125, 100.75, 1000000"
            " FROM generate_series(1, 250) AS s, generate_series(1, 2000) AS d"
        )
    )
    session.commit()
    connections_before, _ = _backends(session)
    address = urlsplit(api_url)
    client = socket.create_connection((address.hostname, address.port), timeout=30)
    client.sendall(
        b"GET /api/financial_data.csv HTTP/1.1\r\nHost: stockpile\r\nConnection: close\r\n\r\n"
    )
    assert client.recv(65536).startswith(b"HTTP/1.1 200")
    wait_until(
        lambda: _backends(session) == (connections_before + 1, 1),
        timeout=30,
        what="the export's COPY on a connection of its own",
    )
    client.close()  # mid-stream: the export has most of its 25 MB left to send
    wait_until(
        lambda: _backends(session) == (connections_before, 0),
        timeout=15,
        what="the export's connection to go",
    )


@pytest.mark.usefixtures("stored")
def test_export_streams_in_chunks_without_a_length(api_url: str) -> None:
    with httpx.stream("GET", f"{api_url}/api/financial_data.csv?{urlencode({})}") as response:
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        assert (
            response.headers["content-disposition"] == 'attachment; filename="financial_data.csv"'
        )
        lines = sum(chunk.count(b"\n") for chunk in response.iter_bytes())
    assert lines == 1 + 1200 + 1000 + 3


def test_openapi_documents_the_export(api: httpx.Client) -> None:
    operation = api.get("/openapi.json").json()["paths"]["/api/financial_data.csv"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"start_date", "end_date", "symbol"}
    assert not any(p["required"] for p in operation["parameters"])
    assert "text/csv" in operation["responses"]["200"]["content"]
    assert {"200", "400", "503"} <= set(operation["responses"])


def test_openapi_documents_the_exports_errors_as_json(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    responses = spec["paths"]["/api/financial_data.csv"]["get"]["responses"]
    for status in ("400", "503"):
        assert responses[status]["content"] == {
            "application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}
        }
    assert "ErrorEnvelope" in spec["components"]["schemas"]


def test_a_fifth_export_at_once_answers_503_after_a_bounded_wait(database_url: str) -> None:
    async def scenario() -> tuple[float, str]:
        exports = ExportConnections(lambda: database_url)
        async with AsyncExitStack() as held:
            for _ in range(EXPORTS_AT_ONCE):
                await held.enter_async_context(exports.connection())
            began = time.monotonic()
            with pytest.raises(ServiceUnavailable) as refused:
                async with exports.connection():
                    pass
            waited = time.monotonic() - began
        # The slots are free again once the exports end.
        async with exports.connection() as connection:
            assert await connection.fetchval("SELECT 1") == 1
        return waited, refused.value.message

    waited, message = asyncio.run(scenario())
    assert CONNECT_TIMEOUT_SECONDS <= waited < CONNECT_TIMEOUT_SECONDS + 5
    assert "Too many exports" in message
