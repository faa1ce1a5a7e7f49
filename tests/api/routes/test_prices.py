"""GET /api/financial_data and GET /api/statistics against real PostgreSQL over HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlmodel import Session

from shared.domain.prices import upsert_prices
from tests.support import bar, history


@pytest.fixture
def stored(session: Session) -> None:
    """IBM on three known days, AAPL on two of them."""
    upsert_prices(
        session,
        "IBM",
        [
            bar("2023-01-03", "10.00", "20.10", 100),
            bar("2023-01-04", "10.00", "20.20", 100),
            bar("2023-01-05", "10.015", "20.30", 101),
        ],
    )
    upsert_prices(
        session,
        "AAPL",
        [
            bar("2023-01-03", "125.0700", "125.0700", 112117500),
            bar("2023-01-04", "0.1234", "170.1000", 5),
        ],
    )
    session.commit()


def _get(api: httpx.Client, path: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = api.get(path, params=params)
    return response.status_code, response.json()


@pytest.mark.usefixtures("stored")
def test_financial_data_orders_by_date_then_symbol_with_string_fields(api: httpx.Client) -> None:
    status, body = _get(api, "/api/financial_data", limit=10)
    assert status == 200
    assert body["info"] == {"error": ""}
    assert body["pagination"] == {"count": 5, "page": 1, "limit": 10, "pages": 1}
    assert [(item["date"], item["symbol"]) for item in body["data"]] == [
        ("2023-01-03", "AAPL"),
        ("2023-01-03", "IBM"),
        ("2023-01-04", "AAPL"),
        ("2023-01-04", "IBM"),
        ("2023-01-05", "IBM"),
    ]
    assert body["data"][0] == {
        "symbol": "AAPL",
        "date": "2023-01-03",
        "open_price": "125.07",
        "close_price": "125.07",
        "volume": "112117500",
    }
    assert body["data"][2]["open_price"] == "0.1234"
    assert body["data"][2]["close_price"] == "170.10"
    assert body["data"][4]["open_price"] == "10.015"


@pytest.mark.usefixtures("stored")
def test_financial_data_defaults_to_five_per_page(api: httpx.Client) -> None:
    _, body = _get(api, "/api/financial_data")
    assert body["pagination"] == {"count": 5, "page": 1, "limit": 5, "pages": 1}
    assert len(body["data"]) == 5


@pytest.mark.usefixtures("stored")
def test_financial_data_paginates_with_ceil_pages(api: httpx.Client) -> None:
    _, page2 = _get(api, "/api/financial_data", limit=2, page=2)
    assert page2["pagination"] == {"count": 5, "page": 2, "limit": 2, "pages": 3}
    assert [(i["date"], i["symbol"]) for i in page2["data"]] == [
        ("2023-01-04", "AAPL"),
        ("2023-01-04", "IBM"),
    ]
    _, page3 = _get(api, "/api/financial_data", limit=2, page=3)
    assert [(i["date"], i["symbol"]) for i in page3["data"]] == [("2023-01-05", "IBM")]


@pytest.mark.usefixtures("stored")
def test_financial_data_page_past_the_end_is_empty_but_truthful(api: httpx.Client) -> None:
    status, body = _get(api, "/api/financial_data", limit=2, page=9)
    assert status == 200
    assert body == {
        "data": [],
        "pagination": {"count": 5, "page": 9, "limit": 2, "pages": 3},
        "info": {"error": ""},
    }


@pytest.mark.usefixtures("stored")
def test_financial_data_limit_bounds(api: httpx.Client) -> None:
    assert _get(api, "/api/financial_data", limit=1)[1]["pagination"]["pages"] == 5
    status, body = _get(api, "/api/financial_data", limit=1000)
    assert status == 200
    assert len(body["data"]) == 5
    for bad in (0, 1001, -1, "ten", "1.5"):
        status, body = _get(api, "/api/financial_data", limit=bad)
        assert status == 400, bad
        assert body["data"] == []
        assert "limit" in body["info"]["error"]


@pytest.mark.parametrize("page", [0, -3, "x"])
def test_financial_data_rejects_bad_page(api: httpx.Client, page: object) -> None:
    status, body = _get(api, "/api/financial_data", page=page)
    assert status == 400
    assert body == {"data": [], "info": {"error": body["info"]["error"]}}
    assert "page" in body["info"]["error"]


@pytest.mark.usefixtures("stored")
def test_financial_data_filters_by_symbol_case_insensitively_and_dates_inclusively(
    api: httpx.Client,
) -> None:
    _, body = _get(
        api, "/api/financial_data", symbol="ibm", start_date="2023-01-04", end_date="2023-01-05"
    )
    assert [(i["symbol"], i["date"]) for i in body["data"]] == [
        ("IBM", "2023-01-04"),
        ("IBM", "2023-01-05"),
    ]
    _, same_day = _get(
        api, "/api/financial_data", start_date="2023-01-04", end_date="2023-01-04", limit=10
    )
    assert [i["symbol"] for i in same_day["data"]] == ["AAPL", "IBM"]


@pytest.mark.usefixtures("stored")
def test_financial_data_unknown_symbol_is_an_empty_list(api: httpx.Client) -> None:
    status, body = _get(api, "/api/financial_data", symbol="MSFT")
    assert status == 200
    assert body["data"] == []
    assert body["pagination"] == {"count": 0, "page": 1, "limit": 5, "pages": 0}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"start_date": "2023-02-30"}, "start_date"),
        ({"end_date": "2023-13-01"}, "end_date"),
        ({"start_date": "20230101"}, "start_date"),
        ({"start_date": "1672531200"}, "start_date"),
        ({"start_date": "2023-01-05", "end_date": "2023-01-04"}, "start_date"),
        ({"symbol": "IBM'; DROP TABLE financial_data;--"}, "symbol"),
        ({"symbol": "A" * 16}, "symbol"),
        ({"symbol": ""}, "symbol"),
        ({"symbol": "IBM AAPL"}, "symbol"),
        ({"symbol": "ÍBM"}, "symbol"),
    ],
)
def test_financial_data_bad_input_is_400_naming_the_parameter(
    api: httpx.Client, params: dict[str, str], name: str
) -> None:
    status, body = _get(api, "/api/financial_data", **params)
    assert status == 400
    assert body["data"] == []
    assert name in body["info"]["error"]
    assert "Traceback" not in body["info"]["error"]


@pytest.mark.usefixtures("stored")
def test_financial_data_accepts_dotted_and_dashed_symbols(api: httpx.Client) -> None:
    status, body = _get(api, "/api/financial_data", symbol="brk.b")
    assert status == 200
    assert body["data"] == []
    assert _get(api, "/api/financial_data", symbol="TSCO.LON")[0] == 200
    assert _get(api, "/api/financial_data", symbol="BF-B")[0] == 200


@pytest.mark.usefixtures("stored")
def test_statistics_averages_round_half_up_in_sql(api: httpx.Client) -> None:
    status, body = _get(
        api, "/api/statistics", symbol="ibm", start_date="2023-01-01", end_date="2023-01-31"
    )
    assert status == 200
    # opens 10.00, 10.00, 10.015 -> 10.005 -> 10.01 (half-up; banker's rounding would give 10.00)
    # closes 20.10, 20.20, 20.30 -> 20.20; volumes 100, 100, 101 -> 100.33 -> 100
    assert body == {
        "data": {
            "start_date": "2023-01-01",
            "end_date": "2023-01-31",
            "symbol": "IBM",
            "average_daily_open_price": 10.01,
            "average_daily_close_price": 20.2,
            "average_daily_volume": 100,
        },
        "info": {"error": ""},
    }


@pytest.mark.usefixtures("stored")
def test_statistics_rounds_a_half_volume_up(api: httpx.Client) -> None:
    _, body = _get(
        api, "/api/statistics", symbol="IBM", start_date="2023-01-04", end_date="2023-01-05"
    )
    # volumes 100 and 101 -> 100.5 -> 101; closes 20.20, 20.30 -> 20.25
    assert body["data"]["average_daily_volume"] == 101
    assert body["data"]["average_daily_close_price"] == 20.25
    assert body["data"]["average_daily_open_price"] == 10.01  # 10.0075 -> 10.01


@pytest.mark.usefixtures("stored")
def test_statistics_single_day_range(api: httpx.Client) -> None:
    _, body = _get(
        api, "/api/statistics", symbol="AAPL", start_date="2023-01-04", end_date="2023-01-04"
    )
    assert body["data"]["average_daily_open_price"] == 0.12
    assert body["data"]["average_daily_close_price"] == 170.1
    assert body["data"]["average_daily_volume"] == 5


@pytest.mark.usefixtures("stored")
@pytest.mark.parametrize("symbol", ["MSFT", "ibm"])
def test_statistics_without_stored_days_is_404(api: httpx.Client, symbol: str) -> None:
    start = "2024-01-01" if symbol == "ibm" else "2023-01-01"
    status, body = _get(
        api, "/api/statistics", symbol=symbol, start_date=start, end_date="2024-12-31"
    )
    assert status == 404
    assert body["data"] is None
    assert symbol.upper() in body["info"]["error"]


@pytest.mark.parametrize("missing", ["start_date", "end_date", "symbol"])
def test_statistics_requires_every_parameter(api: httpx.Client, missing: str) -> None:
    params = {"start_date": "2023-01-01", "end_date": "2023-01-31", "symbol": "IBM"}
    del params[missing]
    status, body = _get(api, "/api/statistics", **params)
    assert status == 400
    assert body["data"] is None
    assert missing in body["info"]["error"]


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"start_date": "2023-02-30"}, "start_date"),
        ({"end_date": "yesterday"}, "end_date"),
        ({"start_date": "2023-02-01", "end_date": "2023-01-01"}, "start_date"),
        ({"symbol": "<script>"}, "symbol"),
    ],
)
def test_statistics_bad_input_is_400_naming_the_parameter(
    api: httpx.Client, params: dict[str, str], name: str
) -> None:
    query = {"start_date": "2023-01-01", "end_date": "2023-01-31", "symbol": "IBM", **params}
    status, body = _get(api, "/api/statistics", **query)
    assert status == 400
    assert body["data"] is None
    assert name in body["info"]["error"]


def test_financial_data_pages_through_a_long_history(api: httpx.Client, session: Session) -> None:
    upsert_prices(session, "IBM", history(2500))
    session.commit()
    _, last = _get(api, "/api/financial_data", symbol="IBM", limit=1000, page=3)
    assert last["pagination"] == {"count": 2500, "page": 3, "limit": 1000, "pages": 3}
    assert len(last["data"]) == 500


def test_openapi_documents_the_real_parameters(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    params = {p["name"]: p for p in spec["paths"]["/api/financial_data"]["get"]["parameters"]}
    assert set(params) == {"start_date", "end_date", "symbol", "limit", "page"}
    assert params["limit"]["schema"]["maximum"] == 1000
    assert params["start_date"]["schema"]["anyOf"][0]["format"] == "date"
    stats = spec["paths"]["/api/statistics"]["get"]
    assert {p["name"] for p in stats["parameters"] if p["required"]} == {
        "start_date",
        "end_date",
        "symbol",
    }
    assert {"200", "400", "404", "503"} <= set(stats["responses"])
    assert api.get("/docs").status_code == 200


def test_openapi_documents_400_for_bad_input_and_never_422(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    operations = [op for path in spec["paths"].values() for op in path.values()]
    assert all("422" not in op["responses"] for op in operations)
    with_parameters = [op for op in operations if op.get("parameters") or op.get("requestBody")]
    assert with_parameters
    assert all("400" in op["responses"] for op in with_parameters)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    assert api.get("/api/financial_data", params={"limit": 0}).status_code == 400
