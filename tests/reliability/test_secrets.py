"""The fake AlphaVantage key, the API token and Flower's password appear nowhere.

A full run with real processes (API, worker, beat, Flower), including upstream errors and the
daily-limit reply that quotes the key back, then a search of every log, every database row,
every API answer, every command Redis executed (task messages and events, decoded) and Flower.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import Engine, text

from shared.domain.queue import QUEUE
from stockpile.localstack import free_port
from stockpile.sandbox.server import SandboxHandle
from tests.processes import CELERY, Process, celery_beat, celery_worker
from tests.reliability.harness import (
    FINISHED,
    enter_together,
    job_rows,
)
from tests.support import API_TOKEN, FAKE_API_KEY, wait_until

pytestmark = pytest.mark.e2e

FLOWER_USER = "ops"
FLOWER_PASSWORD = "FLOWERPW-TEST-9d41b7"
SECRETS = (FAKE_API_KEY, API_TOKEN, FLOWER_PASSWORD)
ENV = {
    "LOG_LEVEL": "DEBUG",
    "ALPHAVANTAGE_TIMEOUT_SECONDS": "1",
    "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
}
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
# Kombu carries task bodies and events base64-encoded: a secret inside would not show in plain.
_ENCODED_BODY = re.compile(rb'body\\?"\s*:\s*\\?"([A-Za-z0-9+/=]{8,})')


class RedisMonitor:
    """Every command a Redis server executes while this runs (MONITOR), as raw bytes."""

    def __init__(self, redis_url: str) -> None:
        parts = urlsplit(redis_url)
        self._sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
        self._sock.sendall(b"MONITOR\r\n")
        self._sock.settimeout(0.2)
        self._chunks: list[bytes] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stopped.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            self._chunks.append(data)

    def stop(self) -> bytes:
        """Stop listening; everything seen, with base64 bodies decoded and appended."""
        self._stopped.set()
        self._thread.join(timeout=5)
        self._sock.close()
        raw = b"".join(self._chunks)
        decoded = []
        for match in _ENCODED_BODY.finditer(raw):
            try:
                decoded.append(base64.b64decode(match.group(1), validate=True))
            except (binascii.Error, ValueError):
                continue
        return raw + b"\n" + b"\n".join(decoded)


@contextmanager
def http_process(name: str, command: list[str], log_dir: Path, ready_url: str) -> Iterator[Process]:
    """A server process with its log, ready once `ready_url` answers."""
    process = Process(name, command, ENV, log_dir)
    try:
        wait_until(lambda: _answers(process, ready_url), timeout=90, what=f"{name} to answer")
        yield process
    finally:
        process.stop()


def _answers(process: Process, url: str) -> bool:
    if process.popen.poll() is not None:
        raise RuntimeError(f"{process.name} exited:\n{process.log()[-3000:]}")
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code < 500
    except httpx.TransportError:
        return False


def _dump_database(engine: Engine) -> str:
    """Every row of every table, as PostgreSQL renders the whole row as text."""
    with engine.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
        ).scalars()
        return "\n".join(
            row
            for table in list(tables)
            for row in conn.execute(text(f'SELECT t::text FROM "{table}" t')).scalars()
        )


def _leaks(places: dict[str, str | bytes]) -> list[str]:
    found = []
    for where, haystack in places.items():
        content = haystack.decode(errors="replace") if isinstance(haystack, bytes) else haystack
        found += [f"{secret!r} in {where}" for secret in SECRETS if secret in content]
    return found


def test_no_secret_appears_in_logs_rows_responses_messages_or_flower(
    engine: Engine,
    sandbox: SandboxHandle,
    redis_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sandbox.configure(echo_key_in_daily_limit=True, slow_seconds=3)
    sandbox.script_faults(["slow"], symbol="TMO")
    api_port, flower_port = free_port(), free_port()
    api_root, flower_root = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{flower_port}"
    uvicorn = [sys.executable, "-m", "uvicorn", "api.main:app", "--port", str(api_port)]
    flower = [*CELERY, "flower", f"--port={flower_port}", "--address=127.0.0.1"]
    monitor = RedisMonitor(redis_url)
    places: dict[str, str | bytes] = {}
    with ExitStack() as stack:
        processes = enter_together(
            stack,
            http_process("flower", flower, tmp_path, f"{flower_root}/healthcheck"),
            celery_worker(ENV, name="secrets-w", concurrency=3),
            celery_beat(ENV, name="secrets-beat"),
            http_process("api", uvicorn, tmp_path, f"{api_root}/healthz"),
        )
        api = stack.enter_context(httpx.Client(base_url=api_root, timeout=30, trust_env=False))
        for symbol in ("IBM", "ERR500", "TRUNC", "INVALID", "TMO"):
            assert api.post("/jobs", json={"symbol": symbol}, headers=AUTH).status_code == 202
        assert api.put("/symbols/AAPL", headers=AUTH).status_code in (200, 201)
        wait_until(
            lambda: len(rows := job_rows(engine)) == 6 and all(r.status in FINISHED for r in rows),
            timeout=120,
            what="six finished jobs",
        )
        # Last, as it pauses the fleet: the daily-limit reply that quotes the key back.
        sandbox.script_faults(["daily_limit"], symbol="ECHO")
        echo_id = api.post("/jobs", json={"symbol": "ECHO"}, headers=AUTH).json()["data"]["id"]
        echo = wait_until(
            lambda: next(
                (r for r in job_rows(engine) if str(r.id) == echo_id and r.not_before_set), None
            ),
            timeout=60,
            what="the throttled job back in the queue",
        )

        # Write endpoints refuse a missing or wrong token; Flower refuses missing credentials.
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
            assert api.post("/jobs", json={"symbol": "MSFT"}, headers=headers).status_code == 401
            assert api.put("/symbols/MSFT", headers=headers).status_code == 401
            assert api.delete("/symbols/AAPL", headers=headers).status_code == 401
        for flower_auth in (None, (FLOWER_USER, "wrong")):
            assert httpx.get(f"{flower_root}/api/tasks", auth=flower_auth).status_code == 401

        answers = [api.get(path) for path in ("/jobs?limit=1000", "/symbols", "/metrics")]
        answers += [api.get(f"/jobs/{row.id}") for row in job_rows(engine)]
        answers += [api.get(f"/symbols/{symbol}") for symbol in ("AAPL", "IBM")]
        answers.append(api.get("/api/financial_data", params={"limit": 1000}))
        places["API answers"] = "\n".join(f"{r.headers}\n{r.text}" for r in answers)

        with httpx.Client(
            base_url=flower_root, auth=(FLOWER_USER, FLOWER_PASSWORD), timeout=30
        ) as flower_client:
            tasks = wait_until(
                lambda: _run_job_tasks(flower_client), timeout=30, what="tasks in Flower"
            )
            pages = [flower_client.get(path) for path in ("/api/tasks", "/tasks", "/api/workers")]
            pages += [flower_client.get(f"/task/{task_id}") for task_id in list(tasks)[:10]]
        assert [page.status_code for page in pages] == [200] * len(pages), [
            (str(page.url), page.status_code) for page in pages
        ]
        places["Flower"] = "\n".join(page.text for page in pages)
        places["Redis commands"] = monitor.stop()
        logs = {process.name: process.log() for process in processes}
    places.update({f"{name} log": log for name, log in logs.items()})
    places["database rows"] = _dump_database(engine)
    places["test log"] = caplog.text

    # The run did what it must to be a real test: messages, events, errors and the echo.
    assert echo.status == "queued"
    assert echo.detail is not None
    assert "***" in echo.detail
    assert {call.outcome.value for call in sandbox.stats().calls} >= {
        "ok",
        "http_500",
        "truncated",
        "invalid_symbol",
        "daily_limit",
    }
    assert QUEUE.encode() in places["Redis commands"]
    assert b"stockpile.run_job" in places["Redis commands"]
    # The echoed key passed through Redis as the fleet's cooldown reason, redacted.
    assert b"detected your API key as ***" in places["Redis commands"]
    assert len(tasks) >= 7
    assert "upstream_error" in places["database rows"]
    logging.getLogger(__name__).info(
        "searched for %d secrets in: %s",
        len(SECRETS),
        ", ".join(f"{where} ({len(haystack):,} bytes)" for where, haystack in places.items()),
    )
    assert _leaks(places) == []


def _run_job_tasks(client: httpx.Client) -> dict[str, dict[str, object]] | None:
    tasks: dict[str, dict[str, object]] = client.get("/api/tasks").json()
    found = {
        task_id: task for task_id, task in tasks.items() if task.get("name") == "stockpile.run_job"
    }
    return found if len(found) >= 7 else None
