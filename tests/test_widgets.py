"""The embeddable widgets in a real browser (Debian's chromium through Playwright), loaded from
another origin than the API, against a running server and worker."""

from __future__ import annotations

import asyncio
import html
import os
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright

from meterflow.app import create_app
from meterflow.config import Settings
from meterflow.db import SessionFactory, unit_of_work
from meterflow.http.embed import STATIC
from meterflow.models import ApiKeyScope
from meterflow.services import accounts, customers
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT, TEST_SECRET_KEY, free_port
from tests.helpers import create_meter, ingest

CHROMIUM = os.environ.get("METERFLOW_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
INVOICE = """query($c: String!) { currentInvoice(customerId: $c) { total currency } }"""


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def prerequisites() -> None:
    """Fail (never skip): without the bundle or the browser these tests prove nothing."""
    if not (STATIC / "meterflow.js").exists():
        pytest.fail(f"{STATIC / 'meterflow.js'} is missing: run scripts/setup to build it")
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the widget tests need Debian's chromium "
            "(run `scripts/setup dev`, or apt-get install chromium)"
        )


@pytest.fixture(scope="module")
async def browser(prerequisites: None) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class _Pages:
    """A static web server on its own port: the embedding site, another origin than the API."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = pages.get(self.path.split("?")[0])
                if body is None:
                    self.send_error(404)
                    return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        # "localhost", not 127.0.0.1: another host as well as another port than the API.
        self.origin = f"http://localhost:{self.port}"
        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, body: str) -> str:
        path = f"/{uuid.uuid4().hex}.html"
        self.pages[path] = body
        return self.origin + path

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[_Pages]:
    pages = _Pages()
    yield pages
    pages.stop()


def embedding_page(server: str, token: str, body: str) -> str:
    """A third-party page: loads the module cross-origin and places widgets."""
    attrs = f'api-url="{html.escape(server)}" token="{html.escape(token)}"'
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>embedding test</title>
<script type="module" src="{server}/embed/meterflow.js"></script></head>
<body>{body.replace("$ATTRS", attrs)}</body></html>"""


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(
        locale="en-US", timezone_id="UTC", viewport={"width": 1100, "height": 900}
    )
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    yield page
    await context.close()
    # A refused token logs its 401 (the expired-state test); nothing else may go wrong.
    unexpected = [p for p in problems if "401" not in p and "page error" in p]
    assert not unexpected, problems


# ---------------------------------------------------------------- helpers


async def plan_for(gql: GraphQLClient, *customer_ids: str, unit_price: str = "0.25") -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    plan = (
        await gql(
            """mutation($p: String!) { createPricingPlan(input: {name: "p", billingPeriod:
            {interval: MONTH}, items: [{meterApiName: "calls", priceModel: {type: "per_unit",
            unitPrice: $p}}]}) { ... on PricingPlan { id } } }""",
            {"p": unit_price},
        )
    )["createPricingPlan"]["id"]
    await gql("mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan})
    for customer in customer_ids:
        await gql(
            "mutation($c: String!) { createCustomer(input: {customerId: $c}) { __typename } }",
            {"c": customer},
        )
        await gql(
            """mutation($c: String!, $p: ID!) { assignPricingPlan(input: {customerId: $c,
            planId: $p}) { __typename } }""",
            {"c": customer, "p": plan},
        )


def calls(customer: str, count: int, region: str = "us", value: float = 1) -> list[dict[str, Any]]:
    millis = int(datetime.now(UTC).timestamp() * 1000) - 2000
    return [
        {
            "meterApiName": "calls",
            "customerId": customer,
            "meterValue": value,
            "meterTimeInMillis": millis,
            "uniqueId": str(uuid.uuid4()),
            "dimensions": {"region": region},
        }
        for _ in range(count)
    ]


async def session_token(gql: GraphQLClient, customer: str, seconds: int | None = None) -> str:
    result = await gql(
        """mutation($c: String!, $s: Int) { createCustomerSession(customerId: $c,
        expiresInSeconds: $s) { __typename ... on CustomerSession { token }
        ... on Error { message } } }""",
        {"c": customer, "s": seconds},
    )
    assert result["createCustomerSession"]["__typename"] == "CustomerSession", result
    return result["createCustomerSession"]["token"]  # type: ignore[no-any-return]


async def invoice_total(gql: GraphQLClient, customer: str, expect: str, within: float = 20) -> str:
    """The server's current total once the worker has rated up to `expect`."""
    deadline = time.monotonic() + within
    while True:
        invoice = (await gql(INVOICE, {"c": customer}))["currentInvoice"]
        if invoice and invoice["total"] == expect:
            return str(invoice["total"])
        assert time.monotonic() < deadline, f"invoice of {customer} stayed at {invoice}"
        await asyncio.sleep(0.1)


async def shadow_text(page: Page, selector: str) -> str:
    return await page.locator(selector).first.evaluate("e => e.shadowRoot.textContent")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=True)


# ---------------------------------------------------------------- tests


async def test_bundles_are_served_as_javascript_with_cors(http: httpx.AsyncClient) -> None:
    for name in ("meterflow.js", "meterflow.iife.js"):
        response = await http.get(f"/embed/{name}", headers={"Origin": "http://elsewhere.example"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript")
        assert response.headers["access-control-allow-origin"] == "*"
        assert "max-age" in response.headers["cache-control"]
        again = await http.get(
            f"/embed/{name}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304
    assert (await http.get("/embed/other.js")).status_code == 404


async def test_invoice_shows_the_server_total_and_follows_ingestion_live(
    server: str,
    gql: GraphQLClient,
    worker: subprocess.Popen[bytes],
    page: Page,
    site: _Pages,
) -> None:
    await plan_for(gql, "live")
    await ingest(gql, calls("live", 8))
    total = await invoice_total(gql, "live", "2.00")
    token = await session_token(gql, "live")
    url = site.add(embedding_page(server, token, "<meterflow-invoice $ATTRS></meterflow-invoice>"))
    await page.goto(url)
    # Loaded cross-origin as a module script (CORS mode), and defined.
    assert await page.evaluate("!!customElements.get('meterflow-invoice')")
    shown = page.locator("meterflow-invoice .total")
    await shown.wait_for(timeout=10_000)
    assert await page.locator("meterflow-invoice").get_attribute("data-total") == total
    assert (await shown.text_content()) == "$2.00"
    assert "calls" in await shadow_text(page, "meterflow-invoice")

    # No reload: the subscription moves the total after events arrive through the API.
    latencies: list[float] = []
    server_side: list[float] = []
    for step, expected in ((4, "3.00"), (4, "4.00")):
        await ingest(gql, calls("live", step))
        started = time.monotonic()

        async def rated(expected: str = expected, started: float = started) -> None:
            await invoice_total(gql, "live", expected)
            server_side.append(time.monotonic() - started)

        rating = asyncio.create_task(rated())
        await page.wait_for_function(
            """expected => document.querySelector('meterflow-invoice')
                 ?.shadowRoot.querySelector('.total')?.textContent === expected""",
            arg=f"${expected}",
            timeout=15_000,
            polling=20,
        )
        latencies.append(time.monotonic() - started)
        await rating
    print(
        "ingest → currentInvoice over GraphQL: "
        + ", ".join(f"{s:.2f}s" for s in server_side)
        + "; ingest → widget on the page: "
        + ", ".join(f"{s:.2f}s" for s in latencies)
    )
    assert max(latencies) < 2.0, (latencies, server_side)
    assert await invoice_total(gql, "live", "4.00") == "4.00"


async def test_usage_chart_draws_points_and_groups_by_a_dimension(
    server: str,
    gql: GraphQLClient,
    worker: subprocess.Popen[bytes],
    page: Page,
    site: _Pages,
) -> None:
    await plan_for(gql, "u")
    await ingest(gql, [*calls("u", 3, "us"), *calls("u", 2, "eu", value=5)])
    await invoice_total(gql, "u", "3.25")  # rolled up
    token = await session_token(gql, "u")
    url = site.add(
        embedding_page(
            server,
            token,
            '<meterflow-usage $ATTRS meter="calls" dimensions="region"></meterflow-usage>',
        )
    )
    await page.goto(url)
    usage = page.locator("meterflow-usage")
    await page.locator("meterflow-usage canvas").wait_for(timeout=10_000)
    assert int(await usage.get_attribute("data-points") or 0) >= 1
    assert await usage.get_attribute("data-series") == "1"
    assert float(await usage.get_attribute("data-total") or 0) == 13
    await page.locator("meterflow-usage select[name=group-by]").select_option("region")
    await page.wait_for_function(
        "document.querySelector('meterflow-usage').dataset.series === '2'", timeout=10_000
    )
    # The legend names both groups; uPlot drew the series.
    text = await shadow_text(page, "meterflow-usage")
    assert "us" in text and "eu" in text
    series = await page.evaluate(
        """() => [...document.querySelector('meterflow-usage').shadowRoot
              .querySelectorAll('.u-series')].length"""
    )
    assert series == 2  # one legend entry per group (the x series has none: legend not live)
    # Live: more usage, no reload.
    await ingest(gql, calls("u", 7, "eu"))
    await page.wait_for_function(
        "document.querySelector('meterflow-usage').dataset.total === '20'", timeout=10_000
    )
    await page.locator("meterflow-usage select[name=interval]").select_option("month")
    await page.wait_for_function(
        "document.querySelector('meterflow-usage').dataset.total === '20'", timeout=10_000
    )


async def test_expired_token_shows_the_expired_state(
    server: str, gql: GraphQLClient, page: Page, site: _Pages
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "late"}) { __typename } }')
    token = await session_token(gql, "late", seconds=1)
    await asyncio.sleep(1.3)
    url = site.add(
        embedding_page(
            server,
            token,
            "<meterflow-invoice $ATTRS></meterflow-invoice>"
            "<meterflow-wallet $ATTRS></meterflow-wallet>",
        )
    )
    await page.goto(url)
    for name in ("meterflow-invoice", "meterflow-wallet"):
        expired = page.locator(f"{name} [data-state=expired]")
        await expired.wait_for(timeout=10_000)
        assert await expired.get_attribute("role") == "alert"
        assert "session token expired" in (await expired.text_content() or "")
    await screenshot(page, "widgets-expired.png")


async def test_a_token_for_one_customer_never_shows_another(
    server: str,
    gql: GraphQLClient,
    worker: subprocess.Popen[bytes],
    page: Page,
    site: _Pages,
) -> None:
    await plan_for(gql, "alpha", "beta")
    await ingest(gql, [*calls("alpha", 4), *calls("beta", 9, "eu")])
    await invoice_total(gql, "alpha", "1.00")
    await invoice_total(gql, "beta", "2.25")
    await gql('mutation { grantCredits(input: {customerId: "beta", amount: "50"}) { __typename } }')
    token = await session_token(gql, "alpha")
    body = (
        "<meterflow-invoice $ATTRS></meterflow-invoice>"
        "<meterflow-wallet $ATTRS></meterflow-wallet>"
        '<meterflow-usage $ATTRS meter="calls" group-by="region" dimensions="region">'
        "</meterflow-usage>"
    )
    await page.goto(site.add(embedding_page(server, token, body)))
    await page.locator("meterflow-invoice .total").wait_for(timeout=10_000)
    await page.locator("meterflow-usage canvas").wait_for(timeout=10_000)
    await page.locator("meterflow-wallet [data-state], meterflow-wallet .balance").first.wait_for(
        timeout=10_000
    )
    assert await page.locator("meterflow-invoice .total").text_content() == "$1.00"
    assert await page.locator("meterflow-usage").get_attribute("data-total") == "4"
    everything = " ".join(
        [await shadow_text(page, n) for n in ("meterflow-invoice", "meterflow-wallet")]
        + [await shadow_text(page, "meterflow-usage")]
    )
    assert "$2.25" not in everything
    assert "$50.00" not in everything
    assert "eu" not in await shadow_text(page, "meterflow-usage")  # beta's region


async def test_the_wallet_reads_like_a_statement(
    server: str,
    gql: GraphQLClient,
    worker: subprocess.Popen[bytes],
    page: Page,
    site: _Pages,
) -> None:
    """Three batches re-rate the invoice three times: one grant line and one line for the
    invoice (naming its period), not a line per re-rate."""
    await plan_for(gql, "stmt")
    await gql('mutation { grantCredits(input: {customerId: "stmt", amount: "50"}) { __typename } }')
    for count, total in ((4, "1.00"), (6, "2.50"), (10, "5.00")):
        await ingest(gql, calls("stmt", count))
        deadline = time.monotonic() + 20
        while True:  # the worker re-rates, the credits follow the invoice
            wallet = (await gql('{ wallet(customerId: "stmt") { balance } }'))["wallet"]
            if Decimal(wallet["balance"]) == 50 - Decimal(total):
                break
            assert time.monotonic() < deadline, f"the wallet stayed at {wallet}"
            await asyncio.sleep(0.1)
    token = await session_token(gql, "stmt")
    await page.goto(
        site.add(embedding_page(server, token, "<meterflow-wallet $ATTRS></meterflow-wallet>"))
    )
    await page.locator("meterflow-wallet .balance").wait_for(timeout=10_000)
    assert await page.locator("meterflow-wallet .balance").text_content() == "$45.00"
    rows = page.locator("meterflow-wallet tbody tr")
    assert await rows.count() == 2
    newest = await rows.nth(0).locator("td").all_text_contents()
    oldest = await rows.nth(1).locator("td").all_text_contents()
    start = datetime.now(UTC).replace(day=1)
    assert newest[1].startswith("Used by invoice ") and "\u2013" in newest[1]
    assert str(start.year) in newest[1] and start.strftime("%b") in newest[1]
    assert newest[2:] == ["-$5.00", "$45.00"]
    assert oldest[1:] == ["Credits granted", "$50.00", "$50.00"]


async def test_alerts_appear_live(
    server: str,
    gql: GraphQLClient,
    page: Page,
    site: _Pages,
    worker: subprocess.Popen[bytes],
) -> None:
    await create_meter(gql, "calls")
    await gql('mutation { createCustomer(input: {customerId: "al"}) { __typename } }')
    created = await gql("""mutation { createAlertRule(input: {name: "Busy day", subject: USAGE,
        meterApiName: "calls", condition: GREATER_THAN, threshold: "3", range: DAY,
        customerId: "al", channels: []}) { __typename } }""")
    assert created["createAlertRule"]["__typename"] == "AlertRule"
    token = await session_token(gql, "al")
    await page.goto(
        site.add(embedding_page(server, token, "<meterflow-alerts $ATTRS></meterflow-alerts>"))
    )
    await page.locator("meterflow-alerts [data-state=empty]").wait_for(timeout=10_000)
    await ingest(gql, calls("al", 5, "us"))
    item = page.locator("meterflow-alerts li")
    await item.first.wait_for(timeout=15_000)
    assert "Busy day" in (await item.first.text_content() or "")


async def test_demo_page_with_a_token(
    server: str,
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    worker: subprocess.Popen[bytes],
    page: Page,
) -> None:
    refused = await http.get("/embed/demo")  # not `meterflow dev`: no token is minted
    assert refused.status_code == 400
    assert "?token=" in refused.text
    await plan_for(gql, "shown")
    await ingest(gql, [*calls("shown", 30, "us"), *calls("shown", 12, "eu", value=2)])
    await gql('mutation { grantCredits(input: {customerId: "shown", amount: "5"}) { __typename } }')
    await invoice_total(gql, "shown", "8.50")  # 54 calls at 0.25 = 13.50, less 5 of credits
    token = await session_token(gql, "shown")
    url = f"{server}/embed/demo?token={token}&meter=calls&dimensions=region"
    response = await http.get(url)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert account.admin_key not in response.text
    await page.goto(url)
    await page.locator("meterflow-invoice .total").wait_for(timeout=10_000)
    await page.locator("meterflow-usage canvas").wait_for(timeout=10_000)
    await page.locator("meterflow-wallet .balance").wait_for(timeout=10_000)
    await page.locator("meterflow-alerts [data-state=empty]").wait_for(timeout=10_000)
    assert await page.locator("meterflow-invoice .total").text_content() == "$8.50"
    await screenshot(page, "embed-demo.png")


async def test_demo_page_mints_a_token_only_under_dev(
    server: str,
    http: httpx.AsyncClient,
    session_factory: SessionFactory,
    database_url: str,
    redis_url: str,
) -> None:
    async with unit_of_work(session_factory) as session:
        demo = await accounts.create_account(session, name="Demo")
        key = await accounts.issue_api_key(
            session, account_id=demo.id, name="k", scope=ApiKeyScope.ADMIN
        )
        await customers.create_customer(
            session, account_id=demo.id, customer_id="acme", now=datetime.now(UTC)
        )
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=TEST_SECRET_KEY,
        demo_embed=True,
    )
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://dev.test"
    ) as client:
        response = await client.get("/embed/demo")
    await app.state.engine.dispose()
    assert response.status_code == 200, response.text
    assert key.secret not in response.text
    token = response.text.split('token="', 1)[1].split('"', 1)[0]
    assert token.startswith("mfs_")
    # The minted token is acme's, and only acme's (the server shares the test secret).
    allowed = await http.post(
        "/graphql",
        json={"query": '{ customer(customerId: "acme") { customerId } }'},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert allowed.json() == {"data": {"customer": {"customerId": "acme"}}}


async def test_the_classic_script_bundle_defines_the_elements_too(
    server: str, page: Page, site: _Pages
) -> None:
    await page.goto(
        site.add(
            f"""<!doctype html><html lang="en"><head><title>classic</title>
            <script src="{server}/embed/meterflow.iife.js"></script></head><body></body></html>"""
        )
    )
    defined = await page.evaluate(
        """['invoice', 'usage', 'wallet', 'alerts']
             .every(n => !!customElements.get('meterflow-' + n)) && !!window.Meterflow"""
    )
    assert defined


async def test_an_unbuilt_bundle_answers_503_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str, redis_url: str
) -> None:
    from meterflow.http import embed

    monkeypatch.setattr(embed, "STATIC", tmp_path)
    app = create_app(
        Settings(database_url=database_url, redis_url=redis_url, secret_key=TEST_SECRET_KEY)
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://x.test"
    ) as client:
        for path in ("/embed/meterflow.js", "/embed/meterflow.iife.js", "/embed/demo?token=t"):
            response = await client.get(path)
            assert response.status_code == 503
            assert "scripts/setup" in response.text
    await app.state.engine.dispose()


async def test_a_finalized_invoice_offers_its_hosted_page_and_turns_paid_live(
    server: str,
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    account: TestAccount,
    worker: subprocess.Popen[bytes],
    session_factory: SessionFactory,
    page: Page,
    site: _Pages,
) -> None:
    from meterflow.secretbox import SecretBox
    from meterflow.services import payment_sync
    from meterflow.services.payment_sync import StripeSync
    from tests.fake_stripe import FakeStripe
    from tests.test_payments_stripe import FINALIZE, connect_stripe, post_event

    await connect_stripe(gql)
    await plan_for(gql, "payer")
    await ingest(gql, calls("payer", 8))
    await invoice_total(gql, "payer", "2.00")
    invoice_id = (await gql('{ currentInvoice(customerId: "payer") { id } }'))["currentInvoice"][
        "id"
    ]
    assert (await gql(FINALIZE, {"id": invoice_id}))["finalizeInvoice"]["total"] == "2.00"
    with FakeStripe() as fake:
        stripe = StripeSync(
            box=SecretBox(TEST_SECRET_KEY), clock=lambda: datetime.now(UTC), api_base=fake.url
        )
        await payment_sync.sync_invoice(
            session_factory, stripe, account_id=account.account_id, invoice_id=uuid.UUID(invoice_id)
        )
        [sent] = fake.invoices()
        token = await session_token(gql, "payer")
        url = site.add(
            embedding_page(server, token, "<meterflow-invoice $ATTRS></meterflow-invoice>")
        )
        await page.goto(url)
        link = page.locator("meterflow-invoice a.pay")
        await link.wait_for(timeout=10_000)
        assert await link.get_attribute("href") == sent["hosted_invoice_url"]
        assert await link.text_content() == "Pay this invoice"
        badge = page.locator("meterflow-invoice .badge")
        assert await badge.text_content() == "finalized"
        await screenshot(page, "invoice-to-pay.png")
        paid = await post_event(http, account, fake.mark_paid(sent["id"]))
        assert paid.status_code == 200
        # No reload: Stripe's webhook reaches the widget through invoiceUpdated.
        await page.wait_for_function(
            """() => document.querySelector('meterflow-invoice')
                 ?.shadowRoot.querySelector('.badge')?.textContent === 'paid'""",
            timeout=10_000,
        )
        assert await page.locator("meterflow-invoice a.pay").count() == 0
        await screenshot(page, "invoice-paid.png")
