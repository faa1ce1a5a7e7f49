"""Sandbox settings and the outcomes a call can have."""

from datetime import date
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.core.rate_windows import parse_rate_limits

SERIES_START = date(1999, 11, 1)


class Outcome(StrEnum):
    """How the sandbox answered one /query call (as recorded in the stats)."""

    OK = "ok"
    INVALID_SYMBOL = "invalid_symbol"
    INVALID_FUNCTION = "invalid_function"
    BAD_APIKEY = "bad_apikey"
    DEMO_KEY = "demo_key"
    PREMIUM_OUTPUTSIZE = "premium_outputsize"
    PREMIUM_ENDPOINT = "premium_endpoint"
    BURST_LIMIT = "burst_limit"
    DAILY_LIMIT = "daily_limit"
    PLAN_LIMIT = "plan_limit"
    NOTE_LIMIT = "note_limit"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    TRUNCATED = "truncated"
    HTML = "html"
    HTML_502 = "html_502"
    EMPTY = "empty"
    # The normal body with a non-numeric price in its newest row.
    BAD_NUMBER = "bad_number"
    # The normal body, sent in small pieces spread over slow_seconds (each piece arrives quickly).
    SLOW_BODY = "slow_body"


# A scripted step is a forced outcome, or "slow": wait slow_seconds, then answer normally.
ScriptStep = Outcome | Literal["slow"]


class SandboxConfig(BaseModel):
    """Runtime settings of the sandbox; every field can be changed through PUT /_sandbox/config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    limits: str | None = Field(
        default="1/second,25/day",
        description="Served-call limits per apikey, e.g. '1/second,25/day'; None turns them off.",
    )
    premium: bool = Field(default=False, description="Premium key: outputsize=full is allowed.")
    latency_seconds: float = Field(default=0.0, ge=0, le=120, description="Delay on every call.")
    slow_seconds: float = Field(
        default=3.0,
        ge=0,
        le=300,
        description="Extra delay for SLOW and scripted 'slow'; how long a 'slow_body' trickles.",
    )
    today: date | None = Field(
        default=None,
        description="Pretend it is the evening of this day; None uses the real clock.",
    )
    invalid_symbols: frozenset[str] = Field(
        default=frozenset({"INVALID", "DELISTED", "NOSUCHSYMBOL"}),
        description="Symbols answered with 'Invalid API call' (compared case-insensitively).",
    )
    rejected_apikeys: frozenset[str] = Field(
        default=frozenset({"badkey"}), description="Keys answered like a missing key."
    )
    echo_key_in_daily_limit: bool = Field(
        default=False, description="Use the daily-limit wording that echoes the caller's key."
    )
    fault: Outcome | None = Field(
        default=None, description="Answer every /query call with this outcome (fault injection)."
    )

    @field_validator("limits")
    @classmethod
    def _parseable_limits(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_rate_limits(value)
        return value

    @field_validator("invalid_symbols")
    @classmethod
    def _upper_symbols(cls, value: frozenset[str]) -> frozenset[str]:
        return frozenset(symbol.upper() for symbol in value)

    @field_validator("today")
    @classmethod
    def _after_series_start(cls, value: date | None) -> date | None:
        if value is not None and value < SERIES_START:
            raise ValueError(f"today must not be before the series start {SERIES_START}")
        return value
