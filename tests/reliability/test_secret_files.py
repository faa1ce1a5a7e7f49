"""Secret files as compose mounts them: readable through a group, never by everyone.

The containers run as uid/gid 10001 with the secrets' group added (`group_add`, README). A file
the process cannot read must stop it with one clear line naming the variable, not a traceback.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import REPO_ROOT

# The images' user; the files belong to the operator, never to it.
CONTAINER_UID = 10001
# A group the process is not in by itself: the one the README's `group_add` adds.
SECRETS_GID = 10002
TOKEN = "TOKEN-SECRETFILE-93d1"

API = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", "0"]
WORKER = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "solo"]
READ_TOKEN = [
    sys.executable,
    "-c",
    "from shared.core.settings import get_settings; print(len(get_settings().api_token or ''))",
]


@pytest.fixture
def secret_file() -> Iterator[Path]:
    """The token in a file mode 0640, as the README creates it (in a folder all may traverse)."""
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)
        path = Path(folder) / "api_token"
        old_umask = os.umask(0o027)
        try:
            path.write_text(TOKEN)
        finally:
            os.umask(old_umask)
        yield path


def _run(
    command: list[str], secret: Path, *, groups: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command` with API_TOKEN_FILE=secret, neither the file's owner nor (unless `groups`
    names its group) in its group: as root, without the capabilities that override file modes."""
    if os.geteuid() == 0:
        if secret.exists():
            os.chown(secret, CONTAINER_UID, -1)
        drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
        drop += [f"--groups={groups}"] if groups else ["--clear-groups"]
        command = [*drop, "--", *command]
    env = {**os.environ, "API_TOKEN_FILE": str(secret)}
    env.pop("API_TOKEN")
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_secret_files_are_created_without_any_access_for_others(secret_file: Path) -> None:
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o640


@pytest.mark.parametrize("command", [API, WORKER], ids=["api", "worker"])
def test_an_unreadable_secret_file_stops_the_process_with_one_clear_line(
    secret_file: Path, command: list[str]
) -> None:
    if os.geteuid() != 0:
        secret_file.chmod(0)  # the owner cannot read it either
    else:
        os.chown(secret_file, -1, CONTAINER_UID)  # a group the process is not in
    finished = _run(command, secret_file)
    assert finished.returncode != 0
    output = (finished.stdout + finished.stderr).strip()
    assert output.splitlines() == [
        f"stockpile: invalid settings: API_TOKEN_FILE: {secret_file} cannot be read"
        " (Permission denied)"
    ]
    assert TOKEN not in output


def test_a_missing_secret_file_is_named_in_one_line(secret_file: Path) -> None:
    missing = secret_file.with_name("absent")
    finished = _run(READ_TOKEN, missing)
    assert finished.returncode == 1
    assert finished.stderr.strip() == (
        f"stockpile: invalid settings: API_TOKEN_FILE: {missing} cannot be read"
        " (No such file or directory)"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="changing the file's group and ours needs root")
def test_the_container_user_reads_a_group_readable_secret_through_an_added_group(
    secret_file: Path,
) -> None:
    os.chown(secret_file, -1, SECRETS_GID)  # the operator's own group, in the README's recipe
    finished = _run(READ_TOKEN, secret_file, groups=str(SECRETS_GID))
    assert (finished.returncode, finished.stdout.strip()) == (0, str(len(TOKEN))), finished.stderr
