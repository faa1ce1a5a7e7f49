"""`stockpile export`: the bulk export's CSV, written by the same COPY as the API's."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import BinaryIO

import asyncpg

from shared.core.dates import parse_iso_date
from shared.core.db import CONNECT_TIMEOUT_SECONDS, asyncpg_dsn
from shared.core.symbols import normalize_symbol
from shared.domain.prices import PriceFilter, copy_prices_csv


class ExportError(Exception):
    """A bad argument or an unreachable database, said in one line."""


def price_filter(symbol: str | None, start_date: str | None, end_date: str | None) -> PriceFilter:
    """The export's filters from the command line's text, checked as the API checks them."""
    filters = PriceFilter(
        symbol=None if symbol is None else _symbol(symbol),
        start_date=None if start_date is None else _date("--start-date", start_date),
        end_date=None if end_date is None else _date("--end-date", end_date),
    )
    if filters.start_date and filters.end_date and filters.start_date > filters.end_date:
        raise ExportError("invalid --start-date: it is after --end-date")
    return filters


def _symbol(value: str) -> str:
    try:
        return normalize_symbol(value)
    except ValueError as exc:
        raise ExportError(f"invalid symbol '{value}': {exc}") from None


def _date(option: str, value: str) -> dt.date:
    try:
        return parse_iso_date(value)
    except ValueError as exc:
        raise ExportError(f"invalid {option}: {exc}") from None


def export_csv(database_url: str, filters: PriceFilter, output: Path | None) -> None:
    """Write the CSV to `output` (a partial file is removed on failure) or to stdout."""
    if output is None:
        try:
            asyncio.run(_copy(database_url, filters, sys.stdout.buffer))
            sys.stdout.flush()
        except BrokenPipeError:
            # The reader stopped early (`| head`): not an error; keep Python's exit flush quiet.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        with output.open("wb") as file:
            asyncio.run(_copy(database_url, filters, file))
    except BaseException:
        output.unlink(missing_ok=True)
        raise


async def _copy(database_url: str, filters: PriceFilter, stream: BinaryIO) -> None:
    try:
        connection = await asyncpg.connect(
            asyncpg_dsn(database_url), timeout=CONNECT_TIMEOUT_SECONDS
        )
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise ExportError(f"cannot reach the database ({type(exc).__name__})") from None

    async def write(chunk: bytes) -> None:
        stream.write(chunk)

    try:
        await copy_prices_csv(connection, filters, write)
    finally:
        await connection.close()
