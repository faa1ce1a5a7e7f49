"""The README's compose commands, typed as written (all but `docker` itself) in a fresh folder.

By a user who is not root (when the suite runs as root, as CI does, an unprivileged uid/gid
without root's capabilities): the README promises that path needs no `sudo`.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import REPO_ROOT

KEY = "KEY-README-5a1f"
# The operator when the suite runs as root: no name, no supplementary group, no capability.
OPERATOR_ID = 10003


def _compose_block() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"production-like path is Docker Compose:\n\n```bash\n(.*?)```", readme, re.S)
    assert block is not None
    return block[1].splitlines()


def _operator() -> tuple[int, int, list[str]]:
    """(uid, gid, command prefix) of the user who types the commands: never root."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid(), []
    drop = ["setpriv", f"--reuid={OPERATOR_ID}", f"--regid={OPERATOR_ID}", "--clear-groups"]
    return OPERATOR_ID, OPERATOR_ID, [*drop, "--inh-caps=-all", "--bounding-set=-all", "--"]


@pytest.fixture
def checkout() -> Iterator[Path]:
    """A fresh folder holding `.env.example`, owned by the operator (outside root's 0700 tmp)."""
    uid, gid, _ = _operator()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder)
        shutil.copy(REPO_ROOT / ".env.example", path / ".env.example")
        for owned in (path, path / ".env.example"):
            os.chown(owned, uid, gid)
        yield path


def test_a_user_who_is_not_root_creates_secret_files_no_other_user_can_read(
    checkout: Path,
) -> None:
    uid, gid, as_operator = _operator()
    commands = [line for line in _compose_block() if not line.startswith("docker ")]
    # The modes come from the umask at creation, never from a later chmod/chgrp: no file under
    # ./secrets (or .env) is readable by others at any moment.
    assert not [line for line in commands if re.search(r"\bch(mod|grp|own)\b", line)]
    subprocess.run(
        [*as_operator, "bash", "-euo", "pipefail", "-c", "\n".join(commands)],
        cwd=checkout,
        env={**os.environ, "YOUR_KEY": KEY},
        check=True,
        timeout=60,
    )
    secrets = checkout / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o750
    files = {path.name: path.stat() for path in secrets.iterdir()}
    assert {name: stat.S_IMODE(f.st_mode) for name, f in files.items()} == {
        "api_token": 0o640,
        "alphavantage_api_key": 0o640,
    }
    assert {(f.st_uid, f.st_gid) for f in files.values()} == {(uid, gid)}
    # The README shows both paths; run in order, the sandbox's placeholder key comes last.
    assert (secrets / "alphavantage_api_key").read_text() == "sandbox"
    env_file = checkout / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # the database password is in it
    settings = env_file.read_text().splitlines()
    assert f"SECRETS_GID={gid}" in settings  # the files' group, which the containers join
    assert "ALPHAVANTAGE_BASE_URL=http://sandbox:8765/query" in settings


def test_the_readme_starts_both_paths_and_waits_for_health() -> None:
    docker = [line for line in _compose_block() if line.startswith("docker ")]
    assert docker == [
        "docker compose up -d --wait --scale worker=2",
        "docker compose --profile sandbox up -d --wait --scale worker=2",
    ]
