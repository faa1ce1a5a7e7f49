"""The servers' processes die with the process that started them."""

from __future__ import annotations

import json
import select
import shutil
import signal
import subprocess
import sys
from typing import Any

from tests.stockpile.localstack.support import (
    alive,
    listening,
    wait_dead,
)

_CHILD = """
import json, time
from stockpile.localstack import start_postgres, start_redis
pg, rd = start_postgres(), start_redis()
print(json.dumps({"pids": [pg.pid, rd.pid], "dirs": [str(pg.data_dir), str(rd.data_dir)],
                  "port": rd.port}), flush=True)
time.sleep(120)
"""


def test_servers_stop_when_their_parent_is_killed() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    started: dict[str, Any] = {"dirs": []}
    try:
        ready, _, _ = select.select([child.stdout], [], [], 60)
        assert ready, "the child did not start its servers"
        started = json.loads(child.stdout.readline())
        pids = [int(pid) for pid in started["pids"]]
        assert all(alive(pid) for pid in pids)

        child.send_signal(signal.SIGKILL)
        child.wait(10)

        assert all(wait_dead(pid) for pid in pids)
        assert not listening(int(started["port"]))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for directory in started["dirs"]:
            shutil.rmtree(directory, ignore_errors=True)
