"""The container health checks: HTTP answers and a file that beat keeps rewriting."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from stockpile.healthcheck import check_fresh, check_http
from stockpile.sandbox.server import SandboxHandle


def test_http_check_passes_on_2xx(sandbox_server: SandboxHandle) -> None:
    assert check_http(f"{sandbox_server.root_url}/_sandbox/config", timeout=5) is None


def test_http_check_fails_on_an_error_status(sandbox_server: SandboxHandle) -> None:
    url = f"{sandbox_server.root_url}/no-such-page"
    assert check_http(url, timeout=5) == f"{url} answered 404"


def test_http_check_fails_when_nothing_listens() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problem = check_http(f"http://127.0.0.1:{port}/readyz", timeout=5)
    assert problem is not None
    assert "did not answer" in problem


def test_fresh_check_passes_for_a_recently_written_file(tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    schedule.write_bytes(b"x")
    assert check_fresh(schedule, max_age=60, now=time.time()) is None


def test_fresh_check_finds_the_dbm_suffixed_files(tmp_path: Path) -> None:
    now = time.time()
    old, recent = tmp_path / "celerybeat-schedule.bak", tmp_path / "celerybeat-schedule.dat"
    for path, mtime in ((old, now - 3600), (recent, now - 5)):
        path.write_bytes(b"x")
        os.utime(path, (mtime, mtime))
    assert check_fresh(tmp_path / "celerybeat-schedule", max_age=60, now=now) is None


def test_fresh_check_fails_for_a_stale_or_missing_file(tmp_path: Path) -> None:
    schedule = tmp_path / "celerybeat-schedule"
    assert check_fresh(schedule, max_age=60, now=time.time()) == f"{schedule} does not exist"
    schedule.write_bytes(b"x")
    os.utime(schedule, (time.time() - 600, time.time() - 600))
    problem = check_fresh(schedule, max_age=60, now=time.time())
    assert problem is not None
    assert "last changed 600 s ago" in problem


def test_command_exits_nonzero_with_one_line_when_unhealthy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stockpile.healthcheck", "fresh", str(tmp_path / "x")]
        + ["--max-age", "60"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == f"unhealthy: {tmp_path / 'x'} does not exist\n"
