"""The embeddable widgets: /embed/meterflow.js (ES module), /embed/meterflow.iife.js (classic
script) and /embed/demo, a page showing all four for one customer. The bundles are built from
frontend-embed/ by `scripts/setup` into http/embed_static/."""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
from sqlalchemy import select
from sqlmodel import col
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from meterflow.db import SessionFactory, unit_of_work
from meterflow.errors import MeterflowError
from meterflow.models import Account
from meterflow.services import sessions

STATIC = Path(__file__).resolve().parent / "embed_static"
BUNDLES = ("meterflow.js", "meterflow.iife.js")
DEMO_ACCOUNT = "Demo"
DEMO_CUSTOMER = "acme"
DEMO_TOKEN_SECONDS = 3600
# Short: the bundle's name does not change between builds; `no-cache` would refetch every time.
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"


def _not_built(name: str) -> PlainTextResponse:
    return PlainTextResponse(
        f"/embed/{name} is not built: run scripts/setup (it builds frontend-embed/ with npm)\n",
        status_code=503,
        headers={"Cache-Control": "no-store", "Retry-After": "60"},
    )


async def bundle(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in BUNDLES:
        return PlainTextResponse("not found\n", status_code=404)
    path = anyio.Path(STATIC / name)
    try:
        modified = (await path.stat()).st_mtime
        body = await path.read_bytes()
    except FileNotFoundError:
        return _not_built(name)
    etag = f'"{len(body):x}-{int(modified * 1000):x}"'
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="text/javascript; charset=utf-8", headers=headers)


@dataclass(frozen=True)
class DemoPage:
    """/embed/demo with what it needs, handed in by the app factory."""

    session_factory: SessionFactory
    secret_key: str
    mint_tokens: bool  # `meterflow dev` only: a page without ?token= gets the demo customer's

    async def endpoint(self, request: Request) -> Response:
        return await demo(self, request)


async def _demo_token(deps: DemoPage) -> str | None:
    """A 1-hour session token for the demo account's customer, or None without one."""
    async with unit_of_work(deps.session_factory) as session:
        account = await session.scalar(
            select(Account).where(col(Account.name) == DEMO_ACCOUNT).limit(1)
        )
        if account is None:
            return None
        issued = await sessions.create_session(
            session,
            account_id=account.id,
            customer_id=DEMO_CUSTOMER,
            expires_in_seconds=DEMO_TOKEN_SECONDS,
            now=datetime.now(UTC),
            secret_key=deps.secret_key,
        )
    return issued.token


DEMO_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>meterflow widgets</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 0; background: #f6f8fa; color: #1f2328; }}
  header {{ padding: 16px 24px; background: #ffffff; border-bottom: 1px solid #d0d7de; }}
  h1 {{ font-size: 20px; margin: 0; }}
  main {{ display: grid; gap: 16px; padding: 24px;
         grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); }}
  .wide {{ grid-column: 1 / -1; }}
  code {{ background: #eaeef2; padding: 0 4px; border-radius: 4px; }}
</style>
<script type="module" src="{base}/embed/meterflow.js"></script>
</head>
<body>
<header>
  <h1>meterflow widgets</h1>
  <p>Four <code>&lt;meterflow-*&gt;</code> elements, one customer session token,
  live over one WebSocket.</p>
</header>
<main>
  <meterflow-invoice api-url="{base}" token="{token}"></meterflow-invoice>
  <meterflow-wallet api-url="{base}" token="{token}"></meterflow-wallet>
  <meterflow-usage class="wide" api-url="{base}" token="{token}" meter="{meter}"
    dimensions="{dimensions}"></meterflow-usage>
  <meterflow-alerts api-url="{base}" token="{token}"></meterflow-alerts>
</main>
</body>
</html>
"""


async def demo(deps: DemoPage, request: Request) -> Response:
    if not await anyio.Path(STATIC / "meterflow.js").exists():
        return _not_built("meterflow.js")
    token = request.query_params.get("token", "").strip()
    if not token:
        if not deps.mint_tokens:
            return PlainTextResponse(
                "add ?token=<customer session token> to the URL (create one with the "
                "createCustomerSession mutation or POST /session)\n",
                status_code=400,
            )
        try:
            minted = await _demo_token(deps)
        except MeterflowError as exc:
            return PlainTextResponse(f"cannot make a demo token: {exc.message}\n", status_code=400)
        if minted is None:
            return PlainTextResponse(
                f"no {DEMO_ACCOUNT!r} account: start with an empty data dir, or add ?token=\n",
                status_code=400,
            )
        token = minted
    base = str(request.base_url).rstrip("/")
    meter = request.query_params.get("meter", "api-calls")
    dimensions = request.query_params.get("dimensions", "region,endpoint")
    page = DEMO_PAGE.format(
        base=html.escape(base),
        token=html.escape(token),
        meter=html.escape(meter),
        dimensions=html.escape(dimensions),
    )
    # The page holds a customer token: keep it out of caches and other sites' referrers.
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        },
    )


def routes(demo_page: DemoPage) -> list[Route]:
    return [
        Route("/embed/demo", demo_page.endpoint, methods=["GET"]),
        Route("/embed/{name}", bundle, methods=["GET", "HEAD"]),
    ]
