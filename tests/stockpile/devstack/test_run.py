"""`stockpile dev`'s refusals: each one line, before anything starts."""

from __future__ import annotations

import fcntl
import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.core.settings import Settings
from stockpile.devstack.options import DevError, DevOptions
from stockpile.devstack.run import run_dev


@pytest.fixture
def unconfigured() -> Settings:
    """Settings with no server, key or secret configured (and no .env read)."""
    return Settings(
        _env_file=None,
        database_url=None,
        redis_url=None,
        alphavantage_api_key=None,
        api_token=None,
        flower_basic_auth=None,
    )


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A loopback port something listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_dev_refuses_a_port_in_use_before_starting_anything(
    tmp_path: Path, unconfigured: Settings, busy_port: int
) -> None:
    options = DevOptions(data_dir=tmp_path / "data", flower_port=busy_port)
    with pytest.raises(DevError, match=f"port {busy_port} for Flower .* --flower-port"):
        run_dev(unconfigured, options, base_env={}, output=io.StringIO())
    assert not (tmp_path / "data" / "postgres").exists()


def test_dev_refuses_a_folder_another_dev_uses(tmp_path: Path, unconfigured: Settings) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with (data_dir / "dev.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(DevError, match="another `stockpile dev`"):
            run_dev(unconfigured, DevOptions(data_dir=data_dir), base_env={}, output=io.StringIO())
    assert not (data_dir / "postgres").exists()


def test_dev_exits_with_one_line_when_the_configured_database_does_not_answer(
    tmp_path: Path,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgresql+psycopg2://stockpile:hunter2@127.0.0.1:{closed}/stockpile",
    }
    result = subprocess.run(
        [sys.executable, "-m", "stockpile.cli", "dev", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "stockpile dev:" in line]
    assert len(errors) == 1, result.stderr
    assert "DATABASE_URL is set to" in errors[0]
    assert errors[0].endswith("unset DATABASE_URL to use an embedded server")
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert not (tmp_path / "data" / "postgres").exists()
