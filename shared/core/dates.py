"""What a date parameter may look like, in one place for the API and the CLI."""

from __future__ import annotations

import datetime as dt


def parse_iso_date(value: str) -> dt.date:
    """The day written exactly as YYYY-MM-DD, or ValueError saying why not."""
    try:
        # fromisoformat alone also takes 20230105 and week dates; the contract wants one form.
        if len(value) != 10:
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"'{value}' is not a real date in YYYY-MM-DD form") from None
