"""Every process of the stack: its command line (no secrets) and its environment."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from stockpile.devstack.options import HOST, DevOptions
from stockpile.localstack import Services

# Any key the sandbox serves (it treats `demo` and `badkey` specially).
SANDBOX_API_KEY = "stockpile-sandbox"


# Worker options everywhere a worker runs (here, compose, tests): no start-up sync with the other
# workers (mingle) and no subscription to their events (gossip). Nothing uses them, and gossip
# logs a traceback each time the broker comes back. Flower needs neither: it reads task events
# and inspect replies.
QUIET_WORKER_OPTIONS = ("--without-gossip", "--without-mingle")


def process_commands(
    options: DevOptions, *, python: str, beat_schedule: Path, sandbox: bool
) -> dict[str, list[str]]:
    """The command line of every process, by name, in start order (they carry no secrets)."""
    celery = [python, "-m", "celery", "-A", "worker.celery_app"]
    commands: dict[str, list[str]] = {}
    if sandbox:
        commands["sandbox"] = [
            *(python, "-m", "stockpile.sandbox", "--host", HOST),
            *("--port", str(options.sandbox_port)),
        ]
    commands["api"] = [
        *(python, "-m", "uvicorn", "api.main:app", "--host", HOST),
        *("--port", str(options.api_port)),
    ]
    commands["worker"] = [
        *(*celery, "worker", "--loglevel", "INFO", "--hostname", "worker@%h"),
        *("--concurrency", str(options.concurrency)),
        *QUIET_WORKER_OPTIONS,
    ]
    commands["beat"] = [*celery, "beat", "--loglevel", "INFO", "--schedule", str(beat_schedule)]
    commands["flower"] = [*celery, "flower", f"--address={HOST}", f"--port={options.flower_port}"]
    return commands


def child_environment(
    base_env: Mapping[str, str],
    services: Services,
    *,
    api_token_file: Path | None,
    sandbox_url: str | None,
) -> dict[str, str]:
    """The environment every child gets: `base_env` pointed at this stack's servers."""
    env = {key: value for key, value in base_env.items() if key != "FLOWER_BASIC_AUTH"}
    env.update(
        PYTHONUNBUFFERED="1",  # lines reach the terminal as they are written
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
    )
    if api_token_file is not None:
        env.pop("API_TOKEN", None)
        env["API_TOKEN_FILE"] = str(api_token_file)
    if sandbox_url is not None:
        env.pop("ALPHAVANTAGE_API_KEY_FILE", None)
        env["ALPHAVANTAGE_API_KEY"] = SANDBOX_API_KEY
        env["ALPHAVANTAGE_BASE_URL"] = sandbox_url
    return env
