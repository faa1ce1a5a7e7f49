"""Parameter types of the routes: dates, symbols and paging, with their OpenAPI schemas."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import Query
from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

from shared.core.dates import parse_iso_date
from shared.core.symbols import normalize_symbol


def _parse_iso_date(value: object) -> object:
    return parse_iso_date(value) if isinstance(value, str) else value


IsoDate = Annotated[
    dt.date,
    BeforeValidator(_parse_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "example": "2023-01-05"}),
]


def _symbol(value: str) -> str:
    return normalize_symbol(value)


Symbol = Annotated[
    str,
    AfterValidator(_symbol),
    WithJsonSchema(
        {"type": "string", "pattern": r"^[A-Za-z0-9.\-]{1,15}$", "example": "IBM"},
    ),
]

Limit = Annotated[int, Query(ge=1, le=1000, description="Items per page, 1..1000")]
# A bound keeps (page - 1) * limit inside PostgreSQL's bigint OFFSET: a larger page was a 500.
MAX_PAGE = 1_000_000_000
Page = Annotated[
    int, Query(ge=1, le=MAX_PAGE, description=f"Page number, from 1 (at most {MAX_PAGE:,})")
]
