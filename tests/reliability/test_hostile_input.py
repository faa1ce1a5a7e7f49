"""Hostile input over HTTP: schema-driven fuzzing of every endpoint, huge and odd requests.

The API is the real one on a loopback port (the `api_url` fixture); no worker consumes the
broker queue here, so the messages that POSTs send are removed afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from sqlmodel import Session

from shared.domain.queue import QUEUE
from tests.support import API_TOKEN

logger = logging.getLogger(__name__)

EXAMPLES_PER_OPERATION = 50
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def quiet_queue(
    session: Session,
    redis_client: redis.Redis,  # type: ignore[type-arg]
) -> Iterator[None]:
    """An empty database, and no job messages left behind for later tests' workers."""
    yield
    redis_client.delete(QUEUE)


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json")


# Listed, not discovered, so each gets its own test id; the next test keeps the list complete.
OPERATIONS = (
    "GET /api/financial_data",
    "GET /api/financial_data.csv",
    "GET /api/statistics",
    "GET /api/stored_symbols",
    "GET /api/budget",
    "POST /jobs",
    "GET /jobs",
    "GET /jobs/{job_id}",
    "GET /symbols",
    "GET /symbols/{symbol}",
    "PUT /symbols/{symbol}",
    "DELETE /symbols/{symbol}",
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
)
# Operations without any input cannot be sent schema-violating data.
WITHOUT_INPUT = frozenset({"GET /healthz", "GET /readyz", "GET /metrics", "GET /api/budget"})
CASES = [
    pytest.param(label, mode, id=f"{label}-{mode.value}")
    for label in OPERATIONS
    for mode in schemathesis.GenerationMode
    if mode.is_positive or label not in WITHOUT_INPUT
]


def test_fuzzing_covers_every_operation_of_the_schema(api_schema: schemathesis.BaseSchema) -> None:
    found = {result.ok().label for result in api_schema.get_all_operations()}  # type: ignore[union-attr]
    assert found == set(OPERATIONS)


@pytest.mark.e2e
@pytest.mark.parametrize(("label", "mode"), CASES)
def test_operation_answers_per_its_schema_under_fuzzing(
    api_schema: schemathesis.BaseSchema,
    quiet_queue: None,
    label: str,
    mode: schemathesis.GenerationMode,
) -> None:
    method, path = label.split(" ", 1)
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def answers_per_schema(case: schemathesis.Case[Any]) -> None:
        # No 5xx, and status, headers and body as the schema declares them. Schema-valid data
        # may still be refused: OpenAPI cannot say "start_date not after end_date".
        case.call_and_validate(headers=AUTH, excluded_checks=[positive_data_acceptance])

    answers_per_schema()


TEN_MB = 10 * 1024 * 1024


# Built when a test runs, not at collection: together they weigh 30 MB.
BODIES: dict[str, Callable[[], bytes]] = {
    "10MB-symbol": lambda: b'{"symbol": "' + b"A" * TEN_MB + b'"}',
    "10MB-extra-field": lambda: b'{"symbol": "IBM", "pad": "' + b"x" * TEN_MB + b'"}',
    "10MB-binary": lambda: b"\x00\xff" * (TEN_MB // 2),
    "deeply-nested": lambda: b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("kind", BODIES)
def test_oversized_or_pathological_job_bodies_are_refused_and_the_api_survives(
    api: httpx.Client, quiet_queue: None, kind: str
) -> None:
    response = api.post(
        "/jobs",
        content=BODIES[kind](),
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=60,
    )
    assert response.status_code in (400, 413), response.text[:300]
    assert response.json()["data"] is None
    assert response.json()["info"]["error"]
    assert api.get("/healthz").status_code == 200
    assert api.get("/jobs").json()["pagination"]["count"] == 0


def test_a_chunked_body_without_length_is_refused_too(api: httpx.Client, quiet_queue: None) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"symbol": "'
        for _ in range(10):
            yield b"A" * (1024 * 1024)
        yield b'"}'

    response = api.post(
        "/jobs", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code in (400, 413)
    assert api.get("/healthz").status_code == 200


LISTS = ("/api/financial_data", "/jobs", "/symbols")


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"page": 10**12}, "page"),
        ({"page": 10**30}, "page"),
        ({"limit": 10**30}, "limit"),
        ({"page": 10**12, "limit": 10**30}, "limit"),
        ({"page": -(10**12)}, "page"),
        ({"page": "1e3"}, "page"),
        ({"limit": "NaN"}, "limit"),
        ({"limit": "0x10"}, "limit"),
    ],
)
def test_huge_or_odd_pagination_is_a_400_naming_the_parameter(
    api: httpx.Client, session: Session, path: str, params: dict[str, int | str], name: str
) -> None:
    response = api.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.json()["data"] == []
    assert f"'{name}'" in response.json()["info"]["error"]


def test_the_largest_page_is_still_an_empty_page(api: httpx.Client, session: Session) -> None:
    for path in LISTS:
        body = api.get(path, params={"page": 1_000_000_000, "limit": 1000}).json()
        assert body["data"] == []
        assert body["pagination"]["page"] == 1_000_000_000


HOSTILE_SYMBOLS = [
    "' OR 1=1--",
    "IBM'; DROP TABLE jobs;--",
    'IBM" OR "1"="1',
    "IBM%",
    "IBM_",
    "IBM\\",
    "IBM\x00",
    "IBM\n",
    "ＩＢＭ",  # fullwidth letters
    "İBM",  # a letter whose upper case changes length
    "IB\u200bM",  # zero-width space
    "١٢٣",  # Arabic-Indic digits
    "📈",
    "A" * 16,
    "",
]


@pytest.mark.parametrize("symbol", HOSTILE_SYMBOLS)
def test_hostile_symbols_are_a_400_everywhere_and_touch_nothing(
    api: httpx.Client, quiet_queue: None, symbol: str
) -> None:
    answers = [
        api.get("/api/financial_data", params={"symbol": symbol}),
        api.get(
            "/api/statistics",
            params={"symbol": symbol, "start_date": "2024-01-01", "end_date": "2024-12-31"},
        ),
        api.get("/jobs", params={"symbol": symbol}),
        api.post("/jobs", json={"symbol": symbol}, headers=AUTH),
    ]
    if symbol and "\n" not in symbol:  # an empty path segment is another route
        answers.append(api.put(f"/symbols/{quote(symbol, safe='')}", headers=AUTH))
    assert [r.status_code for r in answers] == [400] * len(answers), [r.text for r in answers]
    assert all("symbol" in r.json()["info"]["error"] for r in answers)
    assert api.get("/jobs").json()["pagination"]["count"] == 0
    assert [s["symbol"] for s in api.get("/symbols").json()["data"]] == ["AAPL", "IBM"]


@pytest.mark.e2e
def test_a_thousand_concurrent_identical_posts_make_one_job(
    api_url: str, api: httpx.Client, quiet_queue: None
) -> None:
    limits = httpx.Limits(max_connections=50, max_keepalive_connections=50)
    with (
        httpx.Client(base_url=api_url, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(max_workers=50) as pool,
    ):

        def post(_: int) -> httpx.Response:
            return client.post("/jobs", json={"symbol": "DEDUP"}, headers=AUTH)

        started = time.monotonic()
        responses = list(pool.map(post, range(1000)))
        logger.info("1000 identical POSTs answered in %.1f s", time.monotonic() - started)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 999 + [202]
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    assert api.get("/jobs").json()["pagination"]["count"] == 1
