"""Request bodies over 64 KiB answer 413 in the envelope, whether announced up front or streamed."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
import redis
from sqlmodel import Session

from api.body_limit import MAX_BODY_BYTES
from shared.domain.queue import QUEUE
from tests.support import API_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}", "Content-Type": "application/json"}
JOB = b'{"symbol": "IBM", "outputsize": "full"}'
TOO_LARGE = f"The request body is larger than {MAX_BODY_BYTES} bytes."


@pytest.fixture(scope="module", autouse=True)
def no_messages_left(redis_client: redis.Redis) -> Iterator[None]:  # type: ignore[type-arg]
    """No job messages left behind for later tests' workers (no worker consumes them here)."""
    yield
    redis_client.delete(QUEUE)


def padded_job(size: int) -> bytes:
    """A valid job body of exactly `size` bytes (JSON allows trailing white space)."""
    return JOB + b" " * (size - len(JOB))


def pieces(body: bytes, size: int = 4096) -> Iterator[bytes]:
    """`body` as a generator, which httpx sends chunked, without Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.json() == {"data": None, "info": {"error": TOO_LARGE}}


def test_a_content_length_over_the_limit_is_413(api: httpx.Client, session: Session) -> None:
    response = api.post("/jobs", content=padded_job(MAX_BODY_BYTES + 1), headers=AUTH)
    assert_refused(response)
    assert api.get("/jobs").json()["pagination"]["count"] == 0


def test_a_chunked_body_growing_past_the_limit_is_413(api: httpx.Client, session: Session) -> None:
    response = api.post("/jobs", content=pieces(padded_job(MAX_BODY_BYTES + 1)), headers=AUTH)
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_refused(response)
    assert api.get("/jobs").json()["pagination"]["count"] == 0


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_the_limit_is_accepted(
    api: httpx.Client, session: Session, framing: str
) -> None:
    body = padded_job(MAX_BODY_BYTES)
    response = api.post(
        "/jobs", content=body if framing == "content-length" else pieces(body), headers=AUTH
    )
    assert response.status_code == 202, response.text[:300]
    assert response.json()["data"]["symbol"] == "IBM"
    assert response.json()["data"]["outputsize"] == "full"


def test_a_body_on_a_route_that_reads_none_is_refused_too(api: httpx.Client) -> None:
    response = api.request("GET", "/healthz", content=b"x" * (MAX_BODY_BYTES + 1))
    assert_refused(response)
    assert api.get("/healthz").status_code == 200


def _raw_post(api_url: str) -> http.client.HTTPConnection:
    """A POST /jobs whose headers are sent and whose body the test writes by hand."""
    address = urlsplit(api_url)
    assert address.hostname is not None
    return http.client.HTTPConnection(address.hostname, address.port, timeout=10)


def test_an_announced_oversized_body_is_refused_before_it_is_sent(api_url: str) -> None:
    connection = _raw_post(api_url)
    try:
        connection.putrequest("POST", "/jobs")
        for name, value in AUTH.items():
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(10**9))
        connection.endheaders()
        # Not one byte of the body is sent: a server that waited for it would time out here.
        response = connection.getresponse()
        assert response.status == 413
        assert response.read() == b'{"data":null,"info":{"error":"' + TOO_LARGE.encode() + b'"}}'
    finally:
        connection.close()


def test_a_streamed_body_is_cut_at_the_limit_without_waiting_for_its_end(
    api_url: str, session: Session
) -> None:
    connection = _raw_post(api_url)
    try:
        connection.putrequest("POST", "/jobs")
        for name, value in AUTH.items():
            connection.putheader(name, value)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.endheaders()
        for piece in pieces(padded_job(MAX_BODY_BYTES + 1)):
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        # No last chunk: the body never ends, so only the count can have refused it.
        response = connection.getresponse()
        assert response.status == 413
        assert response.read().endswith(TOO_LARGE.encode() + b'"}}')
    finally:
        connection.close()
