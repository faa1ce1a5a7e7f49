"""The README's compose commands, typed as written (all but `docker` itself) in a fresh folder."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

from tests.processes import REPO_ROOT

KEY = "KEY-README-5a1f"


def _compose_block() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    block = re.search(r"production-like path is Docker Compose:\n\n```bash\n(.*?)```", readme, re.S)
    assert block is not None
    return block[1].splitlines()


def test_the_readme_creates_secret_files_no_other_user_can_read(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / ".env.example", tmp_path / ".env.example")
    commands = [line for line in _compose_block() if not line.startswith("docker ")]
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(commands)],
        cwd=tmp_path,
        env={**os.environ, "YOUR_KEY": KEY},
        check=True,
        timeout=60,
    )
    secrets = tmp_path / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o750
    modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in secrets.iterdir()}
    assert modes == {"api_token": 0o640, "alphavantage_api_key": 0o640}
    # The README shows both paths; run in order, the sandbox's placeholder key comes last.
    assert (secrets / "alphavantage_api_key").read_text() == "sandbox"
    settings = (tmp_path / ".env").read_text().splitlines()
    assert f"SECRETS_GID={os.getgid()}" in settings
    assert "ALPHAVANTAGE_BASE_URL=http://sandbox:8765/query" in settings


def test_the_readme_starts_both_paths_and_waits_for_health() -> None:
    docker = [line for line in _compose_block() if line.startswith("docker ")]
    assert docker == [
        "docker compose up -d --wait --scale worker=2",
        "docker compose --profile sandbox up -d --wait --scale worker=2",
    ]
