"""What `stockpile dev` was asked for, where it listens, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


class DevError(Exception):
    """A problem that keeps `stockpile dev` from running the stack (one line for the user)."""


@dataclass(frozen=True, slots=True)
class DevOptions:
    """What `stockpile dev` was asked for on its command line."""

    data_dir: Path = Path(".stockpile")
    api_port: int = 8000
    flower_port: int = 5555
    sandbox_port: int = 8765
    # None: PREFERRED_REDIS_PORT when free, otherwise any free port.
    redis_port: int | None = None
    concurrency: int = 2
