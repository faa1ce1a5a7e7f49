"""Without Chromium the browser tests are skipped, in one line that says how to install it.

Runs pytest on the browser tests in a child process whose `chromium_path` finds nothing (a
plugin replaces it before the tests are collected), as on a machine without Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.support import INSTALL_HINT
from tests.processes import REPO_ROOT

NO_CHROMIUM_PLUGIN = """
import tests.browser.support

tests.browser.support.chromium_path = lambda: None
"""


def test_without_chromium_the_browser_tests_skip_in_one_line_with_the_install_hint(
    tmp_path: Path,
) -> None:
    (tmp_path / "no_chromium.py").write_text(NO_CHROMIUM_PLUGIN)
    env = {
        key: value
        for key, value in os.environ.items()
        # This process's servers and pytest's own variables are not the child's.
        if key not in {"DATABASE_URL", "REDIS_URL"} and not key.startswith("PYTEST_")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO_ROOT)])
    run = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "tests/browser/test_dashboard.py"),
            *("-p", "no_chromium", "-p", "no:cacheprovider", "-n", "0"),
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = run.stdout + run.stderr
    # Not a failure: that file alone has nothing left to run (a whole run goes on with the rest).
    assert run.returncode == pytest.ExitCode.NO_TESTS_COLLECTED, output
    hint_lines = [line for line in output.splitlines() if INSTALL_HINT in line]
    assert len(hint_lines) == 1, output
    assert "apt-get install -y chromium" in hint_lines[0]
    assert output.splitlines()[-1].strip("= ").startswith("1 skipped"), output
