"""Errors, soft errors and injected faults of the sandbox over real HTTP."""

import json
import time
from datetime import date

import httpx
import pytest

from stockpile.sandbox import messages
from stockpile.sandbox.config import SandboxConfig
from stockpile.sandbox.server import SandboxHandle
from tests.support import ALPHAVANTAGE_FIXTURES

CONFIG = SandboxConfig(limits=None, today=date(2024, 7, 8), slow_seconds=0.4)
DAILY = "TIME_SERIES_DAILY"


def call(http: httpx.Client, **params: str) -> httpx.Response:
    return http.get("/query", params={"function": DAILY, "apikey": "testkey", **params})


def recorded(name: str) -> dict[str, str]:
    path = ALPHAVANTAGE_FIXTURES / name
    body: dict[str, str] = json.loads(path.read_text())
    return body


def last_outcome(sandbox: SandboxHandle) -> str:
    return sandbox.stats().calls[-1].outcome.value


@pytest.mark.parametrize(
    ("params", "fixture", "outcome"),
    [
        ({"symbol": "INVALID"}, "error_invalid_api_call.json", "invalid_symbol"),
        ({"symbol": "delisted"}, "error_invalid_api_call.json", "invalid_symbol"),
        ({"symbol": "IB M$"}, "error_invalid_api_call.json", "invalid_symbol"),
        ({"symbol": "ABCDEFGHIJKLMNOPQRSTU"}, "error_invalid_api_call.json", "invalid_symbol"),
        ({}, "error_invalid_api_call.json", "invalid_symbol"),
        (
            {"symbol": "IBM", "apikey": ""},
            "error_apikey_invalid_or_missing.json",
            "bad_apikey",
        ),
        (
            {"symbol": "IBM", "apikey": "badkey"},
            "error_apikey_invalid_or_missing.json",
            "bad_apikey",
        ),
        (
            {"symbol": "IBM", "function": "TIME_SERIES_INTRAAY"},
            "error_function_does_not_exist.json",
            "invalid_function",
        ),
        ({"symbol": "AAPL", "apikey": "demo"}, "information_demo_key.json", "demo_key"),
        (
            {"symbol": "IBM", "outputsize": "full"},
            "information_premium_outputsize_full.json",
            "premium_outputsize",
        ),
        (
            {"symbol": "IBM", "function": "TIME_SERIES_DAILY_ADJUSTED"},
            "information_premium_endpoint.json",
            "premium_endpoint",
        ),
    ],
)
@pytest.mark.parametrize("datatype", ["json", "csv"])
def test_errors_match_recorded_alphavantage_bodies(
    http: httpx.Client,
    sandbox: SandboxHandle,
    params: dict[str, str],
    fixture: str,
    outcome: str,
    datatype: str,
) -> None:
    response = call(http, datatype=datatype, **params)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == recorded(fixture)
    assert last_outcome(sandbox) == outcome


def test_missing_apikey_is_rejected(http: httpx.Client) -> None:
    response = http.get("/query", params={"function": DAILY, "symbol": "IBM"})
    assert response.json() == {"Error Message": messages.APIKEY_INVALID_OR_MISSING}


def test_missing_function_does_not_exist(http: httpx.Client) -> None:
    response = http.get("/query", params={"symbol": "IBM", "apikey": "k"})
    assert response.json() == {"Error Message": "This API function () does not exist."}


def test_demo_key_serves_ibm(http: httpx.Client) -> None:
    response = call(http, symbol="IBM", apikey="demo")
    assert response.json()["Meta Data"]["2. Symbol"] == "IBM"


def test_premium_allows_full(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(premium=True)
    response = call(http, symbol="IBM", outputsize="full")
    assert response.json()["Meta Data"]["4. Output Size"] == "Full size"


def test_configured_invalid_symbols_and_keys(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(invalid_symbols=["gone"], rejected_apikeys=["revoked"])
    assert "Error Message" in call(http, symbol="GONE").json()
    assert "Meta Data" in call(http, symbol="INVALID").json()
    assert call(http, symbol="IBM", apikey="revoked").json() == {
        "Error Message": messages.APIKEY_INVALID_OR_MISSING
    }
    assert "Meta Data" in call(http, symbol="IBM", apikey="badkey").json()


def test_bad_function_message_names_the_function(http: httpx.Client) -> None:
    response = call(http, symbol="IBM", function="GLOBAL_QUOTEZ")
    assert response.json() == {"Error Message": "This API function (GLOBAL_QUOTEZ) does not exist."}


@pytest.mark.parametrize(
    ("symbol", "status"), [("ERR500", 500), ("ERR503", 503), ("HTML", 200), ("HTML502", 502)]
)
def test_fault_symbols_answer_html_pages(
    http: httpx.Client, sandbox: SandboxHandle, symbol: str, status: int
) -> None:
    response = call(http, symbol=symbol)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert response.text.startswith("<html>")
    assert sandbox.stats().counts == {
        {"ERR500": "http_500", "ERR503": "http_503", "HTML": "html", "HTML502": "html_502"}[
            symbol
        ]: 1
    }


def test_fault_symbol_trunc_answers_cut_json(http: httpx.Client, sandbox: SandboxHandle) -> None:
    response = call(http, symbol="TRUNC")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.text.startswith('{\n    "Meta Data": {')
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert call(http, symbol="TRUNC").content == response.content
    assert last_outcome(sandbox) == "truncated"


def test_fault_symbol_empty_answers_empty_object(http: httpx.Client) -> None:
    response = call(http, symbol="EMPTY", datatype="csv")
    assert response.status_code == 200
    assert response.json() == {}


def test_fault_symbol_slow_answers_late_with_data(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    started = time.monotonic()
    response = call(http, symbol="SLOW")
    assert time.monotonic() - started >= 0.4
    assert response.json()["Meta Data"]["2. Symbol"] == "SLOW"
    record = sandbox.stats().calls[-1]
    assert (record.outcome.value, record.latency_seconds) == ("ok", 0.4)


def test_configured_latency_delays_every_answer(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.configure(latency_seconds=0.3)
    for params in ({"symbol": "IBM"}, {"symbol": "INVALID"}):
        started = time.monotonic()
        call(http, **params)
        assert time.monotonic() - started >= 0.3
    sandbox.configure(latency_seconds=0)
    call(http, symbol="IBM")
    assert sandbox.stats().calls[-1].latency_seconds == 0


@pytest.mark.parametrize(
    ("fault", "status", "check"),
    [
        ("http_500", 500, "<html>"),
        ("http_503", 503, "<html>"),
        ("empty", 200, "{}"),
        ("note_limit", 200, '"Note"'),
        ("daily_limit", 200, "25 requests per day"),
    ],
)
def test_configured_fault_applies_to_every_call(
    http: httpx.Client, sandbox: SandboxHandle, fault: str, status: int, check: str
) -> None:
    sandbox.configure(fault=fault)
    for symbol in ("IBM", "AAPL", "INVALID"):
        response = call(http, symbol=symbol)
        assert response.status_code == status
        assert check in response.text
    sandbox.configure(fault=None)
    assert call(http, symbol="IBM").status_code == 200
    assert sandbox.stats().counts == {fault: 3, "ok": 1}


def test_scripted_faults_for_one_symbol_then_normal(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.script_faults(["http_503", "http_503"], symbol="IBM")
    assert call(http, symbol="AAPL").status_code == 200  # other symbols are unaffected
    assert call(http, symbol="IBM").status_code == 503
    assert call(http, symbol="ibm").status_code == 503
    assert call(http, symbol="IBM").json()["Meta Data"]["2. Symbol"] == "IBM"
    assert [c.outcome.value for c in sandbox.stats().calls] == [
        "ok",
        "http_503",
        "http_503",
        "ok",
    ]


def test_scripted_faults_for_any_symbol_in_order(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.script_faults(["empty", "truncated", "ok", "html_502", "invalid_symbol"])
    assert call(http, symbol="IBM").json() == {}
    assert call(http, symbol="MSFT").text.startswith('{\n    "Meta Data"')
    assert call(http, symbol="AAPL").json()["Meta Data"]["2. Symbol"] == "AAPL"
    assert call(http, symbol="IBM").status_code == 502
    assert call(http, symbol="IBM").json() == {
        "Error Message": messages.INVALID_API_CALL.format(function=DAILY)
    }
    assert call(http, symbol="IBM").status_code == 200
    assert "Meta Data" in call(http, symbol="IBM").json()


def test_scripted_symbol_steps_go_before_any_symbol_steps(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    sandbox.script_faults(["http_500"])
    sandbox.script_faults(["http_503"], symbol="IBM")
    assert call(http, symbol="IBM").status_code == 503
    assert call(http, symbol="IBM").status_code == 500
    assert call(http, symbol="IBM").status_code == 200


@pytest.mark.parametrize(
    ("outcome", "body"),
    [
        ("burst_limit", {"Information": messages.BURST_LIMIT}),
        ("daily_limit", {"Information": messages.DAILY_LIMIT}),
        ("plan_limit", {"Information": messages.PLAN_LIMIT}),
        ("note_limit", {"Note": messages.LEGACY_NOTE_LIMIT}),
        ("demo_key", {"Information": messages.DEMO_KEY}),
        ("premium_outputsize", {"Information": messages.PREMIUM_OUTPUTSIZE_FULL}),
        ("bad_apikey", {"Error Message": messages.APIKEY_INVALID_OR_MISSING}),
    ],
)
def test_scripted_messages(
    http: httpx.Client, sandbox: SandboxHandle, outcome: str, body: dict[str, str]
) -> None:
    sandbox.script_faults([outcome], symbol="IBM")
    assert call(http, symbol="IBM", datatype="csv").json() == body
    assert last_outcome(sandbox) == outcome


def test_scripted_slow_step_delays_then_answers(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.script_faults(["slow"], symbol="IBM")
    started = time.monotonic()
    assert "Meta Data" in call(http, symbol="IBM").json()
    assert time.monotonic() - started >= 0.4
    call(http, symbol="IBM")
    assert sandbox.stats().calls[-1].latency_seconds == 0  # the script had one slow step


def test_pending_faults_listed_and_consumed(http: httpx.Client, sandbox: SandboxHandle) -> None:
    sandbox.script_faults(["http_503", "ok"], symbol="ibm")
    assert http.get("/_sandbox/faults").json() == {
        "pending": [{"symbol": "IBM", "outcomes": ["http_503", "ok"]}]
    }
    call(http, symbol="IBM")
    call(http, symbol="IBM")
    assert http.get("/_sandbox/faults").json() == {"pending": []}


@pytest.mark.parametrize(
    "body",
    [
        {"outcomes": ["boom"]},
        {"outcomes": []},
        {"symbol": "IBM"},
        {"outcomes": ["ok"], "extra": 1},
    ],
)
def test_invalid_fault_script_rejected(http: httpx.Client, body: dict[str, object]) -> None:
    response = http.post("/_sandbox/faults", json=body)
    assert response.status_code == 422
    assert http.get("/_sandbox/faults").json() == {"pending": []}


def test_daily_limit_echoing_key_shows_the_key(http: httpx.Client, sandbox: SandboxHandle) -> None:
    key = "SECRETKEY-SANDBOX-42"
    sandbox.configure(limits="1/day", echo_key_in_daily_limit=True)
    assert "Meta Data" in call(http, symbol="IBM", apikey=key).json()
    response = call(http, symbol="IBM", apikey=key)
    assert response.json() == {"Information": messages.DAILY_LIMIT_ECHOING_KEY.format(apikey=key)}
    assert f"We have detected your API key as {key} and" in response.text
    stats_text = http.get("/_sandbox/stats").text
    assert key not in stats_text
    assert "daily_limit" in stats_text


def test_daily_limit_echo_wording_matches_recording(
    http: httpx.Client, sandbox: SandboxHandle
) -> None:
    expected = recorded("information_daily_limit_echoes_key.json")
    sandbox.configure(limits="1/day", echo_key_in_daily_limit=True)
    call(http, symbol="IBM", apikey="XXXXXXXXXXXXXXXX")
    assert call(http, symbol="IBM", apikey="XXXXXXXXXXXXXXXX").json() == expected


@pytest.mark.parametrize(
    ("outcome", "fixture"),
    [
        ("burst_limit", "information_burst_limit_1_per_second.json"),
        ("daily_limit", "information_daily_limit.json"),
        ("plan_limit", "information_premium_plan_rate_limit.json"),
        ("note_limit", "note_rate_limit_5_per_minute.json"),
        ("empty", "empty_object.json"),
    ],
)
def test_limit_messages_match_recordings(
    http: httpx.Client, sandbox: SandboxHandle, outcome: str, fixture: str
) -> None:
    expected = recorded(fixture)
    sandbox.script_faults([outcome])
    assert call(http, symbol="IBM").json() == expected
