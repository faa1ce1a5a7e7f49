"""`stockpile dev`'s preparation: secrets kept on disk, refusals before anything starts."""

from __future__ import annotations

import fcntl
import io
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.core.settings import Settings
from stockpile.devstack.credentials import load_or_create_secret
from stockpile.devstack.options import DevError, DevOptions
from stockpile.devstack.processes import SANDBOX_API_KEY, child_environment, process_commands
from stockpile.devstack.run import run_dev
from stockpile.localstack import Services


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_is_generated_once_and_kept_private(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    first = load_or_create_secret(path, lambda: "generated-1")
    second = load_or_create_secret(path, lambda: "generated-2")
    assert (first, second) == ("generated-1", "generated-1")
    assert path.read_text() == "generated-1\n"
    assert mode(path) == 0o600


def test_secret_file_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    path.write_text("kept\n")
    path.chmod(0o644)
    assert load_or_create_secret(path, lambda: "new") == "kept"
    assert mode(path) == 0o600


def test_empty_secret_file_gets_a_new_secret(tmp_path: Path) -> None:
    path = tmp_path / "api_token"
    path.write_text("\n")
    assert load_or_create_secret(path, lambda: "new") == "new"
    assert mode(path) == 0o600


def services() -> Services:
    return Services(database_url="postgresql://db", redis_url="redis://127.0.0.1:6380/0")


def test_child_environment_points_at_the_stack_and_keeps_flower_login_out() -> None:
    base = {
        "PATH": "/bin",
        "API_TOKEN": "",
        "FLOWER_BASIC_AUTH": "u:p",
        "ALPHAVANTAGE_API_KEY_FILE": "/missing",
    }
    env = child_environment(
        base,
        services(),
        api_token_file=Path("/data/api_token"),
        sandbox_url="http://127.0.0.1:8765/query",
    )
    assert env == {
        "PATH": "/bin",
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": "postgresql://db",
        "REDIS_URL": "redis://127.0.0.1:6380/0",
        "API_TOKEN_FILE": "/data/api_token",
        "ALPHAVANTAGE_API_KEY": SANDBOX_API_KEY,
        "ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:8765/query",
    }


def test_child_environment_keeps_configured_key_and_token() -> None:
    base = {"API_TOKEN": "configured", "ALPHAVANTAGE_API_KEY": "real"}
    env = child_environment(base, services(), api_token_file=None, sandbox_url=None)
    assert env["API_TOKEN"] == "configured"
    assert env["ALPHAVANTAGE_API_KEY"] == "real"
    assert "ALPHAVANTAGE_BASE_URL" not in env


def test_process_commands_run_one_of_each_and_the_sandbox_only_without_a_key() -> None:
    options = DevOptions(api_port=1001, flower_port=1002, sandbox_port=1003)
    schedule = Path("/data/celerybeat-schedule")
    with_sandbox = process_commands(options, python="py", beat_schedule=schedule, sandbox=True)
    without = process_commands(options, python="py", beat_schedule=schedule, sandbox=False)
    assert list(with_sandbox) == ["sandbox", "api", "worker", "beat", "flower"]
    assert list(without) == ["api", "worker", "beat", "flower"]
    assert "1001" in with_sandbox["api"]
    assert "--port=1002" in with_sandbox["flower"]
    assert "1003" in with_sandbox["sandbox"]
    assert str(schedule) in with_sandbox["beat"]
    assert {"--without-gossip", "--without-mingle"} <= set(with_sandbox["worker"])


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
