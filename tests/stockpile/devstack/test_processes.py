"""`stockpile dev`'s processes: their command lines and environment."""

from __future__ import annotations

from pathlib import Path

from stockpile.devstack.options import DevOptions
from stockpile.devstack.processes import SANDBOX_API_KEY, child_environment, process_commands
from stockpile.localstack import Services


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
    # The beat that schedules retention, the refresh check and the dispatcher.
    assert with_sandbox["beat"][1:6] == ["-m", "celery", "-A", "worker.celery_app", "beat"]
    assert {"--without-gossip", "--without-mingle"} <= set(with_sandbox["worker"])
