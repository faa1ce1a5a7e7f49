"""The page, its files and the symbols with stored prices, over HTTP (browser tests drive it)."""

from __future__ import annotations

import re

import httpx
from sqlmodel import Session

from api.dashboard import STATIC_DIR
from shared.domain.prices import upsert_prices
from tests.support import API_TOKEN, history


def test_page_has_a_strict_policy_and_no_inline_script_or_token(api: httpx.Client) -> None:
    response = api.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "unsafe" not in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    page = response.text
    assert API_TOKEN not in page
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page) == []
    assert " style=" not in page
    # Every asset the page names lives on this origin and is served.
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    local = [a for a in assets if a.startswith("/")]
    assert set(assets) - set(local) == {"https://www.tradingview.com/"}  # a link, not a load
    for asset in local:
        assert api.get(asset).status_code == 200, asset


def test_static_files_are_not_sniffed_and_have_their_types(api: httpx.Client) -> None:
    script = api.get("/static/dashboard.js")
    assert script.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert script.headers["x-content-type-options"] == "nosniff"
    assert api.get("/static/dashboard.css").headers["content-type"].startswith("text/css")


def test_vendored_libraries_keep_their_licences() -> None:
    for library in ("lightweight-charts", "swagger-ui", "redoc"):
        assert (STATIC_DIR / "vendor" / library / "LICENSE").stat().st_size > 500


def test_docs_pages_load_their_files_from_this_origin(api: httpx.Client) -> None:
    for path in ("/docs", "/redoc"):
        page = api.get(path).text
        urls = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert urls, path
        assert all(url.startswith("/") for url in urls), urls
        for url in urls:
            assert api.get(url).status_code == 200, url
    assert "fonts.googleapis.com" not in api.get("/redoc").text


def test_stored_symbols_lists_every_symbol_with_prices(api: httpx.Client, session: Session) -> None:
    upsert_prices(session, "MSFT", history(3))
    upsert_prices(session, "BRK.B", history(2))
    session.commit()
    body = api.get("/api/stored_symbols").json()
    assert body["data"] == [{"symbol": "BRK.B", "rows": 2}, {"symbol": "MSFT", "rows": 3}]
    assert body["pagination"] == {"count": 2, "page": 1, "limit": 100, "pages": 1}
    second = api.get("/api/stored_symbols", params={"limit": 1, "page": 2}).json()
    assert second["data"] == [{"symbol": "MSFT", "rows": 3}]
    beyond = api.get("/api/stored_symbols", params={"limit": 1, "page": 5}).json()
    assert beyond["data"] == []
    assert beyond["pagination"]["count"] == 2
    bad = api.get("/api/stored_symbols", params={"limit": 0})
    assert bad.status_code == 400
    assert bad.json()["data"] == []
