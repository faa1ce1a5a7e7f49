"""HTTP load from a separate process: wrk when installed, else the Python generator in pyload."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

CONNECTIONS = 16


@dataclass(frozen=True)
class Throughput:
    """Requests (or transactions) per second and latency percentiles of one timed run."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds if self.seconds else 0.0


def find_wrk() -> str | None:
    """The wrk binary, if installed."""
    return shutil.which("wrk")


def run_http_load(url: str, *, seconds: float, tool: str) -> Throughput:
    """`seconds` of GETs on `url` over CONNECTIONS keep-alive connections."""
    if tool == "wrk":
        return _wrk(url, seconds)
    return _pyload(url, seconds)


def _wrk(url: str, seconds: float) -> Throughput:
    wrk = find_wrk()
    if wrk is None:
        raise RuntimeError("wrk is not installed")
    command = [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--latency", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return parse_wrk(output.stdout)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if match is None:
        raise ValueError(f"unexpected wrk duration {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(text: str) -> Throughput:
    """Requests, errors and the 50th/99th percentile latency from `wrk --latency` output."""
    done = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if done is None or p50 is None or p99 is None:
        raise ValueError(f"cannot read wrk output:\n{text}")
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if socket_errors:
        errors += sum(int(group) for group in socket_errors.groups())
    return Throughput(
        requests=int(done.group(1)),
        errors=errors,
        seconds=_ms(done.group(2) + done.group(3)) / 1000,
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
    )


def _pyload(url: str, seconds: float) -> Throughput:
    command = [
        sys.executable,
        "-m",
        "bench.pyload",
        url,
        "--connections",
        str(CONNECTIONS),
        "--seconds",
        str(seconds),
    ]
    output = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600)
    return Throughput(**json.loads(output.stdout))
