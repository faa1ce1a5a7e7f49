"""Where a process's time goes during a run: py-spy samples grouped by part of the stack."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

# (part, markers): a sample counts for the first part with a marker in its stack. A marker
# starting with "^" must be in the innermost frame (code that wraps everything, such as a
# middleware, only counts for what it does itself).
Parts = tuple[tuple[str, tuple[str, ...]], ...]

API_PARTS: Parts = (
    ("psycopg2 execute and fetch", ("do_execute (sqlalchemy",)),
    ("SQLAlchemy (pool, statement, result)", ("sqlalchemy/",)),
    ("asyncpg and the read pool", ("asyncpg/", "^api/read_pool.py")),
    ("route and shared code", ("api/routes/", "shared/")),
    ("FastAPI parameter validation", ("solve_dependencies",)),
    ("worker-thread hop (AnyIO)", ("run_in_threadpool", "anyio/")),
    ("response rendering and sending", ("Response.__call__", "RequestResponseCycle.send")),
    ("metrics middleware", ("prometheus_client/", "^api/metrics.py")),
    ("HTTP parsing, routing, middleware", ("uvicorn/protocols", "starlette/", "fastapi/")),
)
WORKER_PARTS: Parts = (
    ("AlphaVantage fetch (sandbox HTTP + parsing)", ("fetch_daily",)),
    ("rate limiter (Redis)", ("ratelimit.py", "redis/")),
    (
        "PostgreSQL round trips",
        ("do_execute", "do_commit", "do_rollback", "do_ping", "psycopg2/__init__"),
    ),
    ("SQLAlchemy (ORM, pool, statements)", ("sqlalchemy/", "sqlmodel/")),
    # A pool process idles in billiard between tasks (the main process hands each one over).
    ("Celery: waiting for the next task, acks", ("^billiard/", "^celery/", "^kombu/")),
    ("job code (shared/, worker/tasks.py)", ("shared/", "worker/tasks.py")),
)
OTHER = "other"


def find_py_spy() -> str | None:
    """py-spy next to this Python, or on PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextmanager
def sampling(pids: Sequence[int], parts: Parts, *, cpu_only: bool) -> Iterator[dict[str, float]]:
    """Sample the processes until the block ends; the yielded dict gets each part's share.

    `cpu_only` samples just the thread holding the GIL (where CPU goes); otherwise idle
    threads count too (where the wall-clock time goes, waits included).
    """
    py_spy = find_py_spy()
    shares: dict[str, float] = {}
    if py_spy is None or not pids:
        yield shares
        return
    with tempfile.TemporaryDirectory() as work, ExitStack() as recorders:
        outputs = [Path(work) / f"{pid}.txt" for pid in pids]
        for pid, output in zip(pids, outputs, strict=True):
            command = [py_spy, "record", "--pid", str(pid), "--rate", "200", "--nonblocking"]
            command += ["--gil"] if cpu_only else ["--idle"]
            command += ["--format", "raw", "--output", str(output)]
            recorder = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            recorders.callback(_finish, recorder)
        try:
            yield shares
        finally:
            recorders.close()
            raw = "\n".join(path.read_text() for path in outputs if path.exists())
            shares.update(summarize(raw, parts))


def _finish(recorder: subprocess.Popen[bytes]) -> None:
    # py-spy writes its output when interrupted, as after Ctrl+C.
    recorder.send_signal(signal.SIGINT)
    try:
        recorder.wait(timeout=30)
    except subprocess.TimeoutExpired:
        recorder.kill()
        recorder.wait()


def _matches(stack: str, innermost: str, markers: tuple[str, ...]) -> bool:
    return any(
        marker[1:] in innermost if marker.startswith("^") else marker in stack for marker in markers
    )


def summarize(raw: str, parts: Parts) -> dict[str, float]:
    """Share of samples per part, from py-spy's raw (collapsed stack) output."""
    counts: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        innermost = stack.rpartition(";")[2]
        part = next((name for name, marks in parts if _matches(stack, innermost, marks)), OTHER)
        counts[part] += int(count)
    total = sum(counts.values())
    return {part: counts[part] / total for part in [*dict(parts), OTHER]} if total else {}
