"""One `stockpile dev` per data folder: an exclusive lock holding the owner's pid."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from stockpile.devstack.options import DevError


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    # Two stacks on one data folder would fight over its servers and run two beats.
    with lock_path.open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or "?"
            raise DevError(
                f"another `stockpile dev` (pid {owner}) is already running with "
                f"{lock_path.parent}; stop it first"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield
