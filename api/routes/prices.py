"""Stored prices and their statistics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.errors import BadRequest, NotFound
from api.export import CsvExportResponse
from api.lifespan import export_connections, read_pool
from api.params import IsoDate, Limit, Page, Symbol
from api.responses import (
    READ_ERRORS,
    Envelope,
    ErrorEnvelope,
    ListEnvelope,
    error_doc,
    ok,
    ok_list,
)
from shared.domain.price_pages import price_page
from shared.domain.prices import PriceFilter, price_statistics, stored_symbols

router = APIRouter(prefix="/api", tags=["prices"])


class PriceItem(BaseModel):
    """One stored trading day; every field is a string."""

    symbol: str
    date: str
    open_price: str
    close_price: str
    volume: str


class StoredSymbol(BaseModel):
    """A symbol with stored prices, tracked or not."""

    symbol: str
    rows: int


class Statistics(BaseModel):
    """Averages over the stored trading days of a range."""

    start_date: str
    end_date: str
    symbol: str
    average_daily_open_price: float
    average_daily_close_price: float
    average_daily_volume: int


# The envelope's schema, in the components of the document since the other routes use it.
_ERROR_SCHEMA = f"#/components/schemas/{ErrorEnvelope.__name__}"


def _check_range(start_date: object, end_date: object) -> None:
    if start_date is not None and end_date is not None and start_date > end_date:  # type: ignore[operator]
        raise BadRequest("Invalid 'start_date': it is after 'end_date'.")


@router.get("/financial_data", response_model=ListEnvelope[PriceItem], responses=READ_ERRORS)
async def read_financial_data(
    request: Request,
    start_date: Annotated[IsoDate | None, Query(description="First day, inclusive")] = None,
    end_date: Annotated[IsoDate | None, Query(description="Last day, inclusive")] = None,
    symbol: Annotated[Symbol | None, Query(description="Ticker, case-insensitive")] = None,
    limit: Limit = 5,
    page: Page = 1,
) -> JSONResponse:
    """Stored daily prices by date then symbol, one page at a time."""
    _check_range(start_date, end_date)
    filters = PriceFilter(symbol=symbol, start_date=start_date, end_date=end_date)
    reads = read_pool(request)
    found = await price_page(reads.fetch, filters, limit=limit, offset=(page - 1) * limit)
    data = [
        {
            "symbol": row_symbol,
            "date": day.isoformat(),
            "open_price": open_price,
            "close_price": close_price,
            "volume": str(volume),
        }
        for row_symbol, day, open_price, close_price, volume in found.rows
    ]
    return ok_list(data, count=found.count, page=page, limit=limit)


@router.get(
    "/statistics",
    response_model=Envelope[Statistics],
    responses={**READ_ERRORS, 404: error_doc("No stored day in range")},
)
async def read_statistics(
    request: Request,
    start_date: Annotated[IsoDate, Query(description="First day, inclusive")],
    end_date: Annotated[IsoDate, Query(description="Last day, inclusive")],
    symbol: Annotated[Symbol, Query(description="Ticker, case-insensitive")],
) -> JSONResponse:
    """Average open, close and volume of one symbol over a date range."""
    _check_range(start_date, end_date)
    stats = await price_statistics(read_pool(request).fetch, symbol, start_date, end_date)
    if stats is None:
        raise NotFound(f"No stored prices for {symbol} between {start_date} and {end_date}.")
    return ok(
        {
            "start_date": start_date.isoformat(),
            "end_date": end_date.isoformat(),
            "symbol": symbol,
            "average_daily_open_price": float(stats.average_open),
            "average_daily_close_price": float(stats.average_close),
            "average_daily_volume": stats.average_volume,
        }
    )


@router.get("/stored_symbols", response_model=ListEnvelope[StoredSymbol], responses=READ_ERRORS)
async def read_stored_symbols(request: Request, limit: Limit = 100, page: Page = 1) -> JSONResponse:
    """Every symbol with stored prices (tracked or not), alphabetically, with its row count."""
    count, rows = await stored_symbols(
        read_pool(request).fetch, limit=limit, offset=(page - 1) * limit
    )
    data = [{"symbol": symbol, "rows": stored} for symbol, stored in rows]
    return ok_list(data, count=count, page=page, limit=limit)


# Last of the router: FastAPI tries the routes in order, and each route tried before the one that
# matches costs every request about 30,000 CPU instructions (it matches twice), 3.5 % of a
# statistics request (docs/benchmarks.md, "API CPU per request"). An export is one request per
# download.
@router.get(
    "/financial_data.csv",
    status_code=200,
    response_class=CsvExportResponse,
    responses={
        200: {
            "description": "Header `symbol,date,open_price,high_price,low_price,close_price,"
            "volume`, then one line a stored day, by date then symbol",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        # Errors are JSON even here: given as a model, FastAPI would list them as text/csv.
        **{
            status: {
                "description": response["description"],
                "content": {"application/json": {"schema": {"$ref": _ERROR_SCHEMA}}},
            }
            for status, response in READ_ERRORS.items()
        },
    },
)
async def export_financial_data(
    request: Request,
    start_date: Annotated[IsoDate | None, Query(description="First day, inclusive")] = None,
    end_date: Annotated[IsoDate | None, Query(description="Last day, inclusive")] = None,
    symbol: Annotated[Symbol | None, Query(description="Ticker, case-insensitive")] = None,
) -> CsvExportResponse:
    """Every stored day matching the filters as CSV, streamed: the listing's rows and order
    without pages, with the high and low prices too."""
    _check_range(start_date, end_date)
    filters = PriceFilter(symbol=symbol, start_date=start_date, end_date=end_date)
    return CsvExportResponse(export_connections(request), filters, filename="financial_data.csv")
