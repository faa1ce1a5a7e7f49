"""Every setting of Stockpile, read once from the environment (and a `.env` file)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.core.rate_windows import parse_rate_limits

DEFAULT_ALPHAVANTAGE_URL = "https://www.alphavantage.co/query"


class Settings(BaseSettings):
    """Configuration from environment variables; names match CONTRACT.md, upper-cased."""

    model_config = SettingsConfigDict(env_file=".env", env_ignore_empty=True, extra="ignore")

    database_url: str | None = None
    redis_url: str | None = None

    alphavantage_api_key: SecretStr | None = None
    alphavantage_api_key_file: Path | None = None
    alphavantage_base_url: str = DEFAULT_ALPHAVANTAGE_URL
    alphavantage_rate_limits: str = "1/second,25/day"
    alphavantage_timeout_seconds: float = Field(default=15.0, gt=0)
    # Free keys get the premium message for outputsize=full; only premium keys should enable this.
    alphavantage_full_history: bool = False

    api_token: SecretStr | None = None
    api_token_file: Path | None = None
    flower_basic_auth: SecretStr | None = None

    job_max_attempts: int = Field(default=5, ge=1)
    # The longest one attempt of a job may hold it, heartbeat or not (the task's hard time limit
    # is 75 % of it).
    job_lease_seconds: int = Field(default=300, ge=10)
    # A running job whose process has not renewed its claim for this long is presumed dead and
    # runs again; the process renews it every third of this (a heartbeat thread).
    job_heartbeat_timeout_seconds: float = Field(default=15.0, ge=1.5)
    dispatch_interval_seconds: float = Field(default=10.0, gt=0)
    # A queued job sent this long ago but still not picked up is sent again (lost message).
    job_resend_after_seconds: int = Field(default=120, ge=1)
    # A tracked symbol is refreshed at most this often while its data lags the market.
    refresh_min_interval_seconds: int = Field(default=1800, ge=1)
    # How often beat looks for tracked symbols behind the market (a cheap query; no upstream call).
    refresh_check_interval_seconds: float = Field(default=60.0, gt=0)
    # Finished jobs / audited calls older than this many days are deleted (calls never sooner
    # than the rate limiter's longest window needs them: shared/domain/retention.call_retention).
    job_retention_days: float = Field(default=90, gt=0)
    api_call_retention_days: float = Field(default=90, gt=0)
    # How often beat runs the retention task (each run deletes in small batches, then stops, and
    # folds the count deltas of row_tallies: with nothing to delete it costs a few index probes).
    retention_interval_seconds: float = Field(default=60, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("alphavantage_rate_limits")
    @classmethod
    def _rate_limits_parse(cls, value: str) -> str:
        parse_rate_limits(value)
        return value

    @model_validator(mode="after")
    def _read_secret_files(self) -> Settings:
        if self.alphavantage_api_key is None and self.alphavantage_api_key_file is not None:
            self.alphavantage_api_key = _read_secret(
                "ALPHAVANTAGE_API_KEY_FILE", self.alphavantage_api_key_file
            )
        if self.api_token is None and self.api_token_file is not None:
            self.api_token = _read_secret("API_TOKEN_FILE", self.api_token_file)
        return self

    def require_database_url(self) -> str:
        """The database URL, or a clear error when it is not configured."""
        if not self.database_url:
            raise RuntimeError("DATABASE_URL is not set (run `stockpile dev` for a local stack)")
        return self.database_url

    def require_redis_url(self) -> str:
        """The Redis URL, or a clear error when it is not configured."""
        if not self.redis_url:
            raise RuntimeError("REDIS_URL is not set (run `stockpile dev` for a local stack)")
        return self.redis_url


def _read_secret(variable: str, path: Path) -> SecretStr | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{variable}: {path} cannot be read ({exc.strerror})") from None
    return SecretStr(value) if value else None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once; bad ones stop the process with one clear line."""
    try:
        return Settings()
    except ValidationError as exc:
        # An operator's mistake (e.g. a secret file the container user cannot read), not a bug:
        # a traceback through pydantic's internals would hide the one line that matters.
        raise SystemExit(f"stockpile: invalid settings: {_describe(exc)}") from None


def _describe(exc: ValidationError) -> str:
    """Every error of `exc` on one line, without the values (they may be secrets)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        field = ".".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{field}: {message}" if field else message)
    return "; ".join(problems)
