"""The operator console (/console), the hosted customer portal (/portal) and the GraphiQL page
of /graphql: one single-page build from frontend-console/ (`scripts/setup` builds it into
http/console_static/). Every asset is served from here: no page asks any other host."""

from __future__ import annotations

from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

STATIC = Path(__file__).resolve().parent / "console_static"
ASSETS = STATIC / "assets"
# Asset names carry their content hash: a new build is a new name, so they never go stale.
IMMUTABLE = "public, max-age=31536000, immutable"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".woff2": "font/woff2",
    ".json": "application/json",
}
# No other origin for anything: scripts, styles, sockets and fetches stay on this host.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
}


def _not_built(what: str) -> PlainTextResponse:
    return PlainTextResponse(
        f"{what} is not built: run scripts/setup (it builds frontend-console/ with npm)\n",
        status_code=503,
        headers={"Cache-Control": "no-store", "Retry-After": "60"},
    )


async def page(name: str) -> Response:
    """One of the built HTML entry points (index.html, portal.html, ide.html)."""
    try:
        body = await anyio.Path(STATIC / name).read_text()
    except FileNotFoundError:
        return _not_built(f"/console ({name})")
    return HTMLResponse(body, headers=PAGE_HEADERS)


async def console(request: Request) -> Response:
    # History routing: /console/customers/acme is the app too; the app reads its own path.
    return await page("index.html")


async def portal(request: Request) -> Response:
    # The customer token is in the fragment (#token=…): never in a request, a log, a referrer.
    return await page("portal.html")


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    path = (ASSETS / name).resolve()
    if path.parent != ASSETS.resolve() or path.suffix not in TYPES:
        return PlainTextResponse("not found\n", status_code=404)
    try:
        body = await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        return PlainTextResponse("not found\n", status_code=404)
    return Response(
        body,
        media_type=TYPES[path.suffix],
        headers={"Cache-Control": IMMUTABLE, "X-Content-Type-Options": "nosniff"},
    )


def routes() -> list[Route]:
    return [
        Route("/console", console, methods=["GET", "HEAD"]),
        Route("/console/assets/{name}", asset, methods=["GET", "HEAD"]),
        Route("/console/{rest:path}", console, methods=["GET", "HEAD"]),
        Route("/portal", portal, methods=["GET", "HEAD"]),
    ]
