"""The dashboard page at `/`, its static files, and the OpenAPI pages, all served from the package.

Installed after the API routes, with FastAPI's own `/openapi.json` moved there too: every request
tries the app's routes in order, and each one tried before the match costs it CPU (this one about
6,000 instructions, 1 % of a statistics request: docs/benchmarks.md, "API CPU per request").

Nothing a page loads comes from another host: the scripts and styles of the dashboard, Swagger
UI (`/docs`) and ReDoc (`/redoc`) are files under `api/static/` (see its vendor/README.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.routing import Route

STATIC_DIR = Path(__file__).parent / "static"
STATIC_PREFIX = "/static"
VENDOR = f"{STATIC_PREFIX}/vendor"
FAVICON = f"{STATIC_PREFIX}/favicon.svg"

# Scripts, styles, images and requests only from this origin, no inline script or style, no
# framing. The page's files are the only ones it needs.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The page is a static file: revalidate (ETag) so a new release is seen at once.
    "Cache-Control": "no-cache",
}


class _StaticFiles(StaticFiles):
    """Package files with nosniff, so a browser never runs one as a type it guessed."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response


# FastAPI's two OpenAPI pages by path: the tool's name, and its renderer with the files it loads.
_DOCS_PAGES: dict[str, tuple[str, Callable[..., HTMLResponse]]] = {
    "/docs": (
        "Swagger UI",
        partial(
            get_swagger_ui_html,
            swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=FAVICON,
        ),
    ),
    "/redoc": (
        "ReDoc",
        partial(
            get_redoc_html,
            redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
            redoc_favicon_url=FAVICON,
            with_google_fonts=False,
        ),
    ),
}


def install_dashboard(app: FastAPI) -> None:
    """Serve `/`, `/static/...`, `/docs` and `/redoc` (the app is built with docs_url=None), and
    `/openapi.json` after them."""
    app.mount(STATIC_PREFIX, _StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def dashboard() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    for path, (tool, render) in _DOCS_PAGES.items():
        # The same for every request: rendered once.
        page = render(openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - {tool}")
        app.add_api_route(path, _html_page(bytes(page.body)), include_in_schema=False)
    # FastAPI adds its OpenAPI document's route (unchanged: the same document, root_path
    # handling and URL) as the app's first, where every API request would try it first.
    routes = app.router.routes
    document = next(
        route for route in routes if isinstance(route, Route) and route.path == app.openapi_url
    )
    routes.remove(document)
    routes.append(document)


def _html_page(body: bytes) -> Callable[[], Awaitable[HTMLResponse]]:
    async def page() -> HTMLResponse:
        return HTMLResponse(body)

    return page
