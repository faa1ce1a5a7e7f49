"""Limit emulation under concurrency and the /_sandbox control endpoints, over real HTTP."""

import os
import threading
import time
from collections import Counter
from datetime import date

import httpx
import pytest

from stockpile.sandbox import messages
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import SandboxHandle, running_sandbox

CONFIG = SandboxConfig(limits=None, today=date(2024, 7, 8))
DAILY = "TIME_SERIES_DAILY"


def call(http: httpx.Client, symbol: str = "IBM", apikey: str = "testkey") -> httpx.Response:
    return http.get("/query", params={"function": DAILY, "symbol": symbol, "apikey": apikey})


def kind(response: httpx.Response) -> str:
    body = response.json()
    if "Meta Data" in body:
        return "ok"
    if body == {"Information": messages.BURST_LIMIT}:
        return "burst"
    if body == {"Information": messages.DAILY_LIMIT}:
        return "daily"
    if body == {"Information": messages.PLAN_LIMIT}:
        return "plan"
    raise AssertionError(f"unexpected body {body}")


def concurrently(http: httpx.Client, count: int, apikey: str = "testkey") -> Counter[str]:
    """Fire ``count`` calls at once from as many threads; count the kinds of answers."""
    barrier = threading.Barrier(count)
    kinds: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        barrier.wait()
        result = kind(call(http, f"SYM{index}", apikey))
        with lock:
            kinds.append(result)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(kinds) == count
    return Counter(kinds)


def test_burst_window_concurrent_exact(http: httpx.Client, sandbox: SandboxHandle) -> None:
    # A 5-second window so that a loaded machine cannot spread 20 calls past its end.
    sandbox.configure(limits="3/5second")
    assert concurrently(http, 20) == {"ok": 3, "burst": 17}
    assert sandbox.stats().counts == {"ok": 3, "burst_limit": 17}


def test_per_second_window_never_exceeded(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits="3/second")
    answers = concurrently(http, 20)
    assert answers["ok"] >= 3
    assert answers["ok"] + answers["burst"] == 20
    # The log proves the exact sliding window: no second ever holds more than 3 served calls,
    # and every refused call came when the second before it already held 3.
    calls = sandbox.stats().calls
    served = [c.t for c in calls if c.outcome.value == "ok"]
    for record in calls:
        in_window = sum(1 for t in served if record.t - 1 < t <= record.t)
        if record.outcome.value == "ok":
            assert in_window <= 3
        else:
            assert in_window == 3


def test_per_second_limit_frees_after_a_second(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits="1/second,25/day")
    assert kind(call(http)) == "ok"
    assert kind(call(http)) == "burst"
    time.sleep(1.05)
    assert kind(call(http)) == "ok"


def test_daily_window_concurrent_exact(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits="5/day")
    assert concurrently(http, 12) == {"ok": 5, "daily": 7}
    assert kind(call(http)) == "daily"


def test_daily_limit_wins_over_burst(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits="1/second,1/day")
    assert kind(call(http)) == "ok"
    assert kind(call(http)) == "daily"


def test_minute_window_answers_premium_plan_message(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.configure(limits="3/minute", premium=True)
    assert concurrently(http, 10) == {"ok": 3, "plan": 7}


def test_limits_off_serves_everything(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits=None)
    assert concurrently(http, 20) == {"ok": 20}


def test_limits_count_per_apikey(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits="2/day")
    assert [kind(call(http, apikey="first")) for _ in range(3)] == ["ok", "ok", "daily"]
    assert [kind(call(http, apikey="second")) for _ in range(3)] == ["ok", "ok", "daily"]


def test_refused_calls_do_not_use_budget(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(limits="2/day")
    for symbol in ("INVALID", "ERR503", "EMPTY"):
        call(http, symbol)
    sandbox.script_faults(["http_500", "daily_limit"])
    call(http)
    call(http)
    assert [kind(call(http)) for _ in range(3)] == ["ok", "ok", "daily"]


def test_default_config_is_a_free_key() -> None:
    config = SandboxConfig()
    assert config.limits == "1/second,25/day"
    assert not config.premium
    assert config.today is None
    assert {"INVALID", "DELISTED"} <= config.invalid_symbols


def test_stats_record_every_call_without_apikey(http: httpx.Client, sandbox: SandboxHandle) -> None:
    secret = "APIKEY-NEVER-IN-STATS"
    started = time.time()
    call(http, "IBM", secret)
    call(http, "INVALID", secret)
    http.get("/query", params={"function": DAILY, "symbol": "AAPL", "outputsize": "full"})
    http.get(
        "/query",
        params={"function": "X", "symbol": "MSFT", "datatype": "csv", "apikey": secret},
    )
    response = http.get("/_sandbox/stats")
    assert secret not in response.text
    stats = sandbox.stats()
    assert [
        (c.symbol, c.function, c.outputsize, c.datatype, c.outcome.value) for c in stats.calls
    ] == [
        ("IBM", DAILY, None, None, "ok"),
        ("INVALID", DAILY, None, None, "invalid_symbol"),
        ("AAPL", DAILY, "full", None, "bad_apikey"),
        ("MSFT", "X", None, "csv", "invalid_function"),
    ]
    assert all(started <= c.t <= time.time() for c in stats.calls)
    assert stats.counts == {"ok": 1, "invalid_symbol": 1, "bad_apikey": 1, "invalid_function": 1}


def test_control_calls_are_not_recorded(http: httpx.Client, sandbox: SandboxHandle) -> None:
    http.get("/_sandbox/config")
    http.get("/_sandbox/faults")
    sandbox.stats()
    assert sandbox.stats().calls == []


def test_reset_clears_calls_counters_and_scripts(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.configure(limits="1/day")
    call(http)
    assert kind(call(http)) == "daily"
    sandbox.script_faults(["http_503"])
    assert http.post("/_sandbox/reset").status_code == 204
    assert sandbox.stats().calls == []
    assert sandbox.stats().counts == {}
    assert kind(call(http)) == "ok"  # neither the script nor the spent budget remain
    assert sandbox.config().limits == "1/day"  # the config stays


def test_config_partial_update(http: httpx.Client) -> None:
    response = http.put("/_sandbox/config", json={"premium": True, "today": "2024-01-05"})
    assert response.status_code == 200
    assert response.json()["premium"] is True
    assert response.json()["today"] == "2024-01-05"
    assert response.json()["limits"] is None
    config = http.get("/_sandbox/config").json()
    assert config == response.json()
    full = http.get(
        "/query",
        params={"function": DAILY, "symbol": "IBM", "outputsize": "full", "apikey": "k"},
    ).json()
    assert full["Meta Data"]["3. Last Refreshed"] == "2024-01-05"


def test_config_change_of_limits_starts_fresh_counters(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.configure(limits="1/day")
    call(http)
    assert kind(call(http)) == "daily"
    sandbox.configure(premium=True)  # other settings keep the counters
    assert kind(call(http)) == "daily"
    sandbox.configure(limits="2/day")
    assert [kind(call(http)) for _ in range(3)] == ["ok", "ok", "daily"]


@pytest.mark.parametrize(
    "body",
    [
        {"limits": "3/fortnight"},
        {"limits": "0/second"},
        {"latency_seconds": -1},
        {"today": "1990-01-02"},
        {"fault": "meltdown"},
        {"no_such_setting": True},
    ],
)
def test_config_invalid_update_rejected(
    http: httpx.Client, sandbox: SandboxHandle, body: dict[str, object]
) -> None:
    response = http.put("/_sandbox/config", json=body)
    assert response.status_code == 422
    assert response.json()["detail"]
    assert sandbox.config() == CONFIG


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]"])
def test_config_non_object_body_rejected(http: httpx.Client, content: bytes) -> None:
    response = http.put("/_sandbox/config", content=content)
    assert response.status_code == 400


def test_running_sandbox_own_process_reset_and_clean_stop() -> None:
    class Boom(Exception):
        pass

    own = SandboxConfig(limits="2/day", today=date(2024, 1, 5), invalid_symbols=["NOPE"])
    with pytest.raises(Boom), running_sandbox(own) as handle:  # noqa: PT012
        root, pid = handle.root_url, handle.pid
        assert handle.base_url == f"{root}/query"
        assert handle.config() == own
        handle.configure(premium=True, latency_seconds=0.5, fault="empty")
        handle.script_faults(["http_503"])
        handle.reset()  # restores the config the process started with
        assert handle.config() == own
        assert httpx.get(f"{root}/_sandbox/faults").json() == {"pending": []}
        raise Boom
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{root}/_sandbox/config")
