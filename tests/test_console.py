"""The operator console (/console), the hosted portal (/portal) and the /graphql GraphiQL page:
served locally, then driven through the UI alone in Debian's chromium (Playwright), against a
running server and worker. Every view is checked with axe-core and saved as a screenshot."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from meterflow.http.console import STATIC
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT
from tests.helpers import create_meter, ingest
from tests.test_widgets import CHROMIUM, CHROMIUM_ARGS, plan_for, session_token

ARTIFACTS = ROOT / "test-artifacts"
AXE = ROOT / "frontend-console" / "node_modules" / "axe-core" / "axe.min.js"
VIEWS = [
    ("customers", "Customers"),
    ("meters", "Meters"),
    ("events", "Events"),
    ("usage", "Usage"),
    ("plans", "Plans"),
    ("invoices", "Invoices"),
    ("credits", "Credits"),
    ("alerts", "Alerts"),
    ("webhooks", "Webhooks"),
    ("api-keys", "API keys"),
    ("graphql", "GraphQL"),
]
CDN = re.compile(r"unpkg|jsdelivr|cdnjs|googleapis|esm\.sh", re.IGNORECASE)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def built() -> None:
    """Fail (never skip): without the build or the browser these tests prove nothing."""
    if not (STATIC / "index.html").exists():
        pytest.fail(f"{STATIC / 'index.html'} is missing: run scripts/setup to build it")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `scripts/setup dev` (apt-get install chromium)")


@pytest.fixture(scope="module")
async def browser(built: None) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


class Visit:
    """A browser tab on the console that records every request to another host."""

    def __init__(self, page: Page, server: str) -> None:
        self.page = page
        self.server = server
        self.elsewhere: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                self.errors.append(f"console: {message.text}") if message.type == "error" else None
            ),
        )

    def _request(self, request: Any) -> None:
        url: str = request.url
        local = (self.server, self.server.replace("http", "ws", 1), "data:", "blob:")
        if not url.startswith(local):
            self.elsewhere.append(url)

    async def sign_in(self, key: str, path: str = "/console") -> None:
        await self.page.goto(self.server + path)
        await self.page.get_by_label("API key").fill(key)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_role("navigation", name="Console").wait_for()

    async def nav(self, name: str) -> None:
        await self.page.get_by_role("navigation").get_by_role("link", name=name, exact=True).click()


@pytest.fixture
async def visit(browser: Browser, server: str) -> AsyncIterator[Visit]:
    context = await browser.new_context(
        locale="en-US",
        timezone_id="UTC",
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
        bypass_csp=True,  # to inject axe-core; the CSP itself is asserted over HTTP
    )
    page = await context.new_page()
    tab = Visit(page, server)
    yield tab
    await context.close()
    assert not tab.elsewhere, f"requests to other hosts: {tab.elsewhere}"
    assert not tab.errors, tab.errors


async def axe(page: Page, name: str, exclude: tuple[str, ...] = ()) -> None:
    """axe-core (from npm) in the page: no serious or critical violation."""
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        """async exclude => (await axe.run({include: [document], exclude: exclude.map(s => [s])},
                                           {resultTypes: ['violations']})).violations
             .filter(v => v.impact === 'serious' || v.impact === 'critical')
             .map(v => ({id: v.id, impact: v.impact, help: v.help,
                         nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))""",
        list(exclude),
    )
    assert result == [], f"{name}: {json.dumps(result, indent=1)}"


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / name), full_page=False)


async def settled(page: Page) -> None:
    """No view is still loading."""
    await expect(page.get_by_role("status").filter(has_text="Loading…")).to_have_count(
        0, timeout=10_000
    )


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000) - 2000


# ---------------------------------------------------------------- served locally


async def test_console_pages_and_assets_are_served_by_meterflow(
    http: httpx.AsyncClient, built: None
) -> None:
    for path in ("/console", "/console/customers", "/console/events/x?meter=a", "/portal"):
        response = await http.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert not CDN.search(response.text), path
        assets = re.findall(r'(?:src|href)="(/[^"]+)"', response.text)
        assert assets and all(a.startswith("/console/assets/") for a in assets), assets
        for asset in assets:
            served = await http.get(asset)
            assert served.status_code == 200, asset
            assert "immutable" in served.headers["cache-control"]
            assert not CDN.search(served.text), asset
    # Nothing outside the build is reachable (a traversal lands on the app, never on a file).
    escape = await http.get("/console/assets/..%2F..%2Fconsole.py")
    assert "STATIC" not in escape.text
    assert (await http.get("/console/assets/nothing.js")).status_code == 404


async def test_the_graphql_ide_page_is_the_bundled_graphiql(http: httpx.AsyncClient) -> None:
    page = await http.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "meterflow GraphiQL" in page.text
    assert not CDN.search(page.text)
    scripts = re.findall(r'src="([^"]+)"', page.text)
    assert scripts and all(s.startswith("/console/assets/") for s in scripts)


async def test_sessions_answer_a_portal_url(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, server: str
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "p1"}) { __typename } }')
    minted = (
        await gql(
            """mutation { createCustomerSession(customerId: "p1") {
                 ... on CustomerSession { token portalUrl } } }"""
        )
    )["createCustomerSession"]
    assert minted["portalUrl"] == f"{server}/portal#token={minted['token']}"
    posted = await http.post(
        "/session", json={"customerId": "p1"}, headers={"X-API-Key": account.admin_key}
    )
    assert posted.status_code == 200
    body = posted.json()
    assert body["portalUrl"] == f"{server}/portal#token={body['sessionToken']}"


# ---------------------------------------------------------------- in the browser


async def test_sign_in_failure_shows_the_server_message_then_sign_in_and_out(
    visit: Visit, account: TestAccount
) -> None:
    page = visit.page
    await page.goto(visit.server + "/console/meters?status=draft")
    await page.get_by_label("API key").fill("mf_not_a_real_key")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("invalid or revoked API key")
    await screenshot(page, "console-sign-in.png")
    await axe(page, "sign-in")
    await page.get_by_label("API key").fill(account.admin_key)
    await page.get_by_role("button", name="Sign in").click()
    # The deep link survives the sign-in, and a reload (the key is in sessionStorage).
    await expect(page.get_by_role("heading", name="Meters")).to_be_visible()
    await expect(page.get_by_role("button", name="Draft")).to_have_attribute("aria-pressed", "true")
    await page.reload()
    await expect(page.get_by_role("button", name="Draft")).to_have_attribute("aria-pressed", "true")
    assert await page.evaluate("sessionStorage.getItem('meterflow.apiKey')") == account.admin_key
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("API key")).to_be_visible()
    assert await page.evaluate("sessionStorage.getItem('meterflow.apiKey')") is None
    visit.errors = [e for e in visit.errors if "401" not in e]


async def test_the_amberflo_api_monetization_walk_through_in_the_ui_alone(
    visit: Visit, browser: Browser, account: TestAccount, worker: Any, server: str
) -> None:
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/meters")
    # 1. The meter: create it (a draft) and activate it.
    await page.get_by_role("button", name="New meter").click()
    form = page.get_by_role("form", name="Create meter")
    await form.get_by_label("API name").fill("api-calls")
    await form.get_by_label("Type").select_option("SUM")
    await form.get_by_label("Unit").fill("calls")
    await form.get_by_role("button", name="Create meter").click()
    await expect(page.get_by_role("status").filter(has_text="created as a draft")).to_be_visible()
    await page.get_by_role("button", name="Activate api-calls").click()
    await expect(page.get_by_role("status").filter(has_text="is active")).to_be_visible()

    # 2. The plan: $5 per 1,000 calls with 5,000 free, previewed by the server, activated.
    await visit.nav("Plans")
    await page.get_by_role("button", name="New plan").click()
    builder = page.get_by_role("form", name="Plan builder")
    await builder.get_by_label("Plan name").fill("API monetization")
    await builder.get_by_label("Meter").fill("api-calls")
    await builder.get_by_label("Price model").select_option("package")
    await builder.get_by_label("Package size").fill("1000")
    await builder.get_by_label("Package price").fill("5")
    await builder.get_by_label("Included units").fill("5000")
    await builder.get_by_label("Preview quantity").fill("12345")
    await expect(builder.locator("output")).to_contain_text("$40.00 for 12,345 units")
    await screenshot(page, "console-plan-builder.png")
    await axe(page, "plan builder")
    await builder.get_by_role("button", name="Create plan").click()
    await expect(page.get_by_role("heading", name="API monetization")).to_be_visible()
    await page.get_by_role("button", name="Activate API monetization").click()
    await expect(page.locator(".badge").first).to_have_text("ACTIVE")

    # 3. The customer, on the plan.
    await visit.nav("Customers")
    await page.get_by_role("button", name="Create customer").click()
    create = page.get_by_role("form", name="Create customer")
    await create.get_by_label("Customer ID").fill("acme-ui")
    await create.get_by_label("Name").fill("Acme UI")
    await create.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("heading", name="Acme UI")).to_be_visible()
    await page.get_by_label("Assign plan").select_option(label="API monetization")
    await page.get_by_role("button", name="Assign", exact=True).click()
    await expect(page.get_by_role("link", name="API monetization")).to_be_visible()

    # A second tab watches the customer's invoice while the first one ingests.
    watcher_context = await browser.new_context(locale="en-US", timezone_id="UTC")
    watcher = Visit(await watcher_context.new_page(), server)
    await watcher.sign_in(account.admin_key, "/console/customers/acme-ui")
    total = watcher.page.locator("meterflow-invoice .total")
    await expect(total).to_have_text("$0.00", timeout=15_000)

    # 4. 12,345 calls from the Ingest panel, each outcome shown.
    await visit.nav("Events")
    await page.get_by_role("button", name="Ingest", exact=True).click()
    panel = page.get_by_role("form", name="Ingest events")
    await panel.get_by_label("Meter API name").fill("api-calls")
    await panel.get_by_label("Customer ID").fill("acme-ui")
    await panel.get_by_label("Count").fill("12345")
    await panel.get_by_role("button", name="Send events").click()
    await expect(page.locator(".ingest-result")).to_have_text(
        re.compile(r"12,345 accepted, 0\s+duplicates, 0 rejected"), timeout=60_000
    )
    outcomes = page.get_by_role("table", name="Outcomes")
    await expect(outcomes).to_have_attribute("aria-rowcount", "12346")
    # Virtualized: far fewer rows in the page than outcomes.
    assert await outcomes.locator("tbody tr").count() < 100
    await screenshot(page, "console-ingest.png")
    await axe(page, "ingest panel")

    # 5. "$40.00" on the invoice, live: the watching tab never reloaded.
    await expect(total).to_have_text("$40.00", timeout=30_000)
    live_rows = watcher.page.get_by_role("table", name="Recent events of acme-ui")
    await expect(live_rows.locator("tbody tr")).to_have_count(20)  # the tail, newest 20
    await screenshot(watcher.page, "console-customer.png")
    await watcher_context.close()
    assert not watcher.elsewhere and not watcher.errors, (watcher.elsewhere, watcher.errors)

    # The By Event view starts from the newest events and pages back.
    await visit.nav("Customers")
    await visit.nav("Events")
    await expect(page.get_by_text("500 events, newest first.")).to_be_visible()
    await page.get_by_role("button", name="Load older events").click()
    await expect(page.get_by_text("1,000 events, newest first.")).to_be_visible()
    events_table = page.get_by_role("table", name="Events")
    assert await events_table.locator("tbody tr").count() < 100  # virtualized

    # And the invoice view agrees.
    await visit.nav("Invoices")
    await settled(page)
    await page.get_by_role("link", name="acme-ui").click()
    await expect(page.locator(".invoice-total")).to_have_text("$40.00")


async def test_meter_status_buttons_filter_and_stay_in_the_url(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "m-active")
    await create_meter(gql, "m-draft", activate=False)
    await create_meter(gql, "m-old")
    await gql('mutation { deprecateMeter(meterApiName: "m-old") { __typename } }')
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/meters")
    table = page.get_by_role("table", name="Meters")

    await expect(table.locator("tbody tr:not(.spacer)")).to_have_count(3)
    for button, expected in (
        ("Active", ["m-active"]),
        ("Draft", ["m-draft"]),
        ("Deprecated", ["m-old"]),
        ("All", ["m-active", "m-draft", "m-old"]),
    ):
        await page.get_by_role("button", name=button, exact=True).click()
        await expect(page.get_by_role("button", name=button, exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        await expect(table.locator("tbody tr:not(.spacer) td:first-child")).to_have_text(expected)
    await page.get_by_role("button", name="Deprecated", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/console/meters\?status=deprecated$"))
    await page.reload()
    await expect(table.locator("tbody tr:not(.spacer)")).to_have_count(1)
    # A lifecycle refusal, in words: an active meter cannot be edited.
    await page.get_by_role("button", name="All", exact=True).click()
    await page.get_by_role("button", name="Activate m-draft").click()
    await expect(page.get_by_role("status").filter(has_text="m-draft is active")).to_be_visible()
    await expect(page.get_by_role("button", name="Activate m-draft")).to_have_count(0)


async def test_the_event_drawer_shows_the_payload_as_ingested(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await plan_for(gql, "drawer")
    unique = str(uuid.uuid4())
    record = {
        "meterApiName": "calls",
        "customerId": "drawer",
        "meterValue": "2.50",
        "meterTimeInMillis": now_ms(),
        "uniqueId": unique,
        "dimensions": {"region": "eu"},
    }
    assert (await ingest(gql, [record]))["accepted"] == 1
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/events?customer=drawer")
    rows = page.get_by_role("table", name="Events").locator("tbody tr.clickable")
    await expect(rows).to_have_count(1)
    await rows.first.click()
    drawer = page.get_by_role("dialog")
    await expect(drawer).to_contain_text("Payload as ingested")
    payload = json.loads(await drawer.get_by_label("Payload as ingested").inner_text())
    assert payload["uniqueId"] == unique
    assert payload["dimensions"] == {"region": "eu"}
    stored = await gql(
        '{ meterEvents(filter: {customerId: "drawer"}) { edges { node { payload } } } }'
    )
    assert payload == stored["meterEvents"]["edges"][0]["node"]["payload"]
    await expect(drawer.locator("dd").filter(has_text="No").first).to_be_visible()
    await expect(drawer.get_by_role("link").nth(1)).to_have_attribute("href", re.compile("/plans/"))
    await expect(drawer.get_by_role("link").nth(2)).to_have_attribute(
        "href", re.compile("/invoices/")
    )
    await screenshot(page, "console-event-drawer.png")
    await axe(page, "event drawer")
    # Cancel it from the drawer.
    await drawer.get_by_role("button", name="Cancel event").click()
    await expect(page.get_by_role("status").filter(has_text="cancelled")).to_be_visible()
    await drawer.get_by_role("button", name="Close").click()
    # By keyboard: Enter on a row opens the drawer with the focus in it; Escape gives it back.
    await rows.first.focus()
    await page.keyboard.press("Enter")
    await expect(drawer.get_by_role("button", name="Close")).to_be_focused()
    await page.keyboard.press("Escape")
    await expect(drawer).to_have_count(0)
    await expect(rows.first).to_be_focused()
    # The live tail: a new event shows up on top, no reload.
    await expect(page.get_by_role("status").filter(has_text="Live")).to_be_visible()
    later = {**record, "uniqueId": str(uuid.uuid4()), "meterValue": "7"}
    assert (await ingest(gql, [later]))["accepted"] == 1
    await expect(rows).to_have_count(2, timeout=10_000)
    await expect(rows.first.locator("td").nth(3)).to_have_text("7")


async def test_usage_csv_export_holds_what_is_shown(
    visit: Visit, gql: GraphQLClient, account: TestAccount, worker: Any
) -> None:
    await plan_for(gql, "u-us", "u-eu")
    millis = now_ms()
    events = [
        {
            "meterApiName": "calls",
            "customerId": customer,
            "meterValue": value,
            "meterTimeInMillis": millis,
            "uniqueId": str(uuid.uuid4()),
            "dimensions": {"region": region},
        }
        for customer, region, value, count in (("u-us", "us", 1, 3), ("u-eu", "eu", 5, 2))
        for _ in range(count)
    ]
    await ingest(gql, events)
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/usage?meter=calls&groupBy=region")
    table = page.get_by_role("table", name="Usage table")
    for _ in range(100):  # until the worker has rolled the events up
        await page.reload()
        await settled(page)
        if await table.count() and "10" in await table.inner_text():
            break
        await asyncio.sleep(0.3)
    await expect(page.get_by_role("img", name=re.compile("2 series"))).to_be_visible()
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export CSV").click()
    download = await info.value
    text = await anyio.Path(await download.path()).read_text()
    lines = text.strip().split("\n")
    assert lines[0] == "group,interval_start,value,percent_change"
    by_group: dict[str, float] = {}
    for line in lines[1:]:
        group, _start, value, _change = line.split(",")
        by_group[group] = by_group.get(group, 0) + float(value)
    assert by_group == {"region=eu": 10, "region=us": 3}
    # One CSV row per table row: the export is what is shown.
    assert len(lines) - 1 == await table.locator("tbody tr").count()
    # A dimension filter narrows it, and so does the export.
    await page.get_by_label("Filter (key=value,value; key=value)").fill("region=eu")
    await page.get_by_label("Filter (key=value,value; key=value)").press("Enter")
    await page.get_by_label("Filter (key=value,value; key=value)").blur()
    await expect(page.get_by_role("img", name=re.compile("1 series"))).to_be_visible()
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Export CSV").click()
    only_eu = await anyio.Path(await (await info.value).path()).read_text()
    assert {line.split(",")[0] for line in only_eu.strip().split("\n")[1:]} == {"region=eu"}


async def test_the_portal_shows_the_widgets_for_a_token(
    visit: Visit, gql: GraphQLClient, worker: Any
) -> None:
    await plan_for(gql, "portal")
    await ingest(
        gql,
        [
            {
                "meterApiName": "calls",
                "customerId": "portal",
                "meterValue": 4,
                "meterTimeInMillis": now_ms(),
                "uniqueId": str(uuid.uuid4()),
            }
        ],
    )
    token = await session_token(gql, "portal")
    page = visit.page
    await page.goto(f"{visit.server}/portal#token={token}")
    await expect(page.locator("meterflow-invoice .total")).to_have_text("$1.00", timeout=20_000)
    await expect(page.locator("meterflow-usage")).to_have_count(1)
    await expect(page.get_by_role("heading", level=1)).to_have_text("portal")
    await screenshot(page, "console-portal.png")
    await axe(page, "portal")
    await page.goto("about:blank")  # a new fragment alone would not load the page again
    await page.goto(f"{visit.server}/portal#token=mfs_forged")
    await expect(page.get_by_role("alert")).to_contain_text("no longer works")


async def test_every_view_loads_passes_axe_and_is_screenshotted(
    visit: Visit, gql: GraphQLClient, account: TestAccount, worker: Any
) -> None:
    await plan_for(gql, "view-a", "view-b")
    await ingest(
        gql,
        [
            {
                "meterApiName": "calls",
                "customerId": "view-a",
                "meterValue": 3,
                "meterTimeInMillis": now_ms(),
                "uniqueId": str(uuid.uuid4()),
                "dimensions": {"region": "us"},
            }
        ],
    )
    page = visit.page
    await visit.sign_in(account.admin_key)
    for path, label in VIEWS:
        await visit.nav(label)
        await expect(page).to_have_url(re.compile(f"/console/{path}"))
        await settled(page)
        if path == "graphql":
            await page.locator(".graphiql-container").wait_for(timeout=20_000)
            await expect(page.locator(".graphiql-container")).to_contain_text("meterflow")
            # It runs with the console's key (the answer lists the meter made above).
            await page.locator(".graphiql-execute-button").click()
            await expect(page.locator(".result-window")).to_contain_text('"calls"')
        else:
            await expect(page.get_by_role("heading", level=1)).to_have_text(label)
            await expect(page.get_by_role("alert")).to_have_count(0)
        await screenshot(page, f"console-{path}.png")
        # GraphiQL's own editor fails axe upstream (unlabelled CodeMirror textareas, nested
        # tab buttons, token colours): the console around it is checked, GraphiQL is not.
        await axe(page, path, exclude=(".graphiql-container",) if path == "graphql" else ())
        # A reload lands on the same view.
        await page.reload()
        await expect(page).to_have_url(re.compile(f"/console/{path}"))
        await expect(page.get_by_role("link", name=label, exact=True)).to_have_attribute(
            "aria-current", "page"
        )
    # The customer page (the widgets) and the keyboard: Tab reaches the navigation.
    await visit.nav("Customers")
    await page.get_by_role("link", name="view-a").click()
    await expect(page.locator("meterflow-invoice .total")).to_have_text("$0.75", timeout=20_000)
    recent = page.get_by_role("table", name="Recent events of view-a").locator("tbody tr")
    await expect(recent).to_have_count(1)
    await axe(page, "customer page")
    async with page.context.expect_page() as opened:
        await page.get_by_role("button", name="Open portal as customer").click()
    portal = await opened.value
    await expect(portal).to_have_url(re.compile(r"/portal#token=mfs_"))
    await expect(portal.locator("meterflow-invoice .total")).to_have_text("$0.75", timeout=20_000)
    await portal.close()
    await page.reload()
    await page.get_by_role("navigation", name="Console").wait_for()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "Skip to content"
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.textContent.trim()") == "meterflow"


async def test_the_graphql_page_runs_graphiql_from_meterflow_alone(
    visit: Visit, account: TestAccount
) -> None:
    page = visit.page
    await page.goto(visit.server + "/graphql")
    await page.get_by_label("API key").fill(account.admin_key)
    await page.get_by_role("button", name="Open GraphiQL").click()
    await page.locator(".graphiql-container").wait_for(timeout=20_000)
    await expect(page.locator(".graphiql-container")).to_contain_text("meterflow")
    await page.locator(".graphiql-execute-button").click()
    await expect(page.locator(".result-window")).to_contain_text('"meters"', timeout=10_000)
    await screenshot(page, "graphql-page.png")
    # visit's teardown asserts that nothing was asked of another host (no CDN).


async def test_an_invoice_is_finalized_then_voided_from_its_page(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls")
    plan = (
        await gql(
            """mutation { createPricingPlan(input: {name: "fee plan", billingPeriod:
            {interval: MONTH}, fees: [{name: "platform", amount: "9.00"}], items:
            [{meterApiName: "calls", priceModel: {type: "per_unit", unitPrice: "1"}}]}) {
            ... on PricingPlan { id } } }"""
        )
    )["createPricingPlan"]["id"]
    await gql("mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan})
    await gql('mutation { createCustomer(input: {customerId: "billed"}) { __typename } }')
    await gql(
        """mutation($p: ID!) { assignPricingPlan(input: {customerId: "billed", planId: $p}) {
             __typename } }""",
        {"p": plan},
    )
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/invoices?status=OPEN")
    await expect(page.get_by_label("Status")).to_have_value("OPEN")
    await page.get_by_role("link", name="billed").click()
    await expect(page.locator(".invoice-total")).to_have_text("$9.00")
    await expect(page.get_by_role("table", name="Invoice lines")).to_contain_text("platform")
    await page.get_by_role("button", name="Finalize").click()
    await expect(page.locator("h1 + .badge")).to_have_text("FINALIZED")
    await page.get_by_role("button", name="Void").click()
    await expect(page.get_by_role("status").filter(has_text="Invoice voided")).to_be_visible()
    await expect(page.locator("h1 + .badge")).to_have_text("VOID")
    await screenshot(page, "console-invoice.png")


async def test_customers_search_and_sort_live_in_the_url(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    for customer_id, name in (("c-1", "Zeta Corp"), ("c-2", "alpha labs"), ("c-3", "Beta Inc")):
        await gql(
            "mutation($c: String!, $n: String!) { createCustomer(input: {customerId: $c, "
            "name: $n}) { __typename } }",
            {"c": customer_id, "n": name},
        )
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/customers")
    names = page.get_by_role("table", name="Customers").locator(
        "tbody tr:not(.spacer) td:nth-child(2)"
    )
    await expect(names).to_have_text(["Zeta Corp", "alpha labs", "Beta Inc"])  # created order
    await page.get_by_role("button", name="Name").click()
    await expect(names).to_have_text(["alpha labs", "Beta Inc", "Zeta Corp"])  # case ignored
    await page.get_by_role("button", name="Name").click()
    await expect(names).to_have_text(["Zeta Corp", "Beta Inc", "alpha labs"])
    await expect(page.get_by_role("columnheader", name="Name")).to_have_attribute(
        "aria-sort", "descending"
    )
    await page.get_by_label("Search").fill("ta")
    await page.get_by_label("Search").press("Enter")
    await expect(names).to_have_text(["Zeta Corp", "Beta Inc"])
    await expect(page).to_have_url(re.compile(r"q=ta.*sort=name.*dir=desc"))
    await page.reload()
    await expect(names).to_have_text(["Zeta Corp", "Beta Inc"])
    await expect(page.get_by_label("Search")).to_have_value("ta")


async def test_an_api_key_is_shown_once_and_revoking_it_signs_out(
    visit: Visit, account: TestAccount
) -> None:
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/api-keys")
    form = page.get_by_role("form", name="Create API key")
    await form.get_by_label("Name").fill("console test")
    await form.get_by_label("Scope").select_option("ADMIN")
    await form.get_by_role("button", name="Create key").click()
    secret = (await page.locator(".secret-value").inner_text()).strip()
    assert secret.startswith("mf_")
    await page.get_by_role("button", name="I stored it").click()
    await expect(page.locator(".secret-value")).to_have_count(0)  # never shown again
    row = page.get_by_role("row").filter(has_text="console test")
    await expect(row).to_contain_text("ADMIN")
    assert secret not in await page.content()

    # Signed in with the new key, revoke it: the next request answers 401 and the form
    # comes back with the server's message.
    await page.get_by_role("button", name="Sign out").click()
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await page.get_by_role("button", name="Revoke console test").click()
    # The list's reload is the first request after the revocation.
    await expect(page.get_by_role("alert")).to_have_text("invalid or revoked API key")
    await expect(page.get_by_label("API key")).to_be_visible()
    visit.errors = [e for e in visit.errors if "401" not in e]


async def test_a_lifecycle_refusal_is_explained_in_words(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "raced", activate=False)
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/meters?status=draft")
    await page.get_by_role("button", name="Edit raced").click()
    form = page.get_by_role("form", name="Edit meter raced")
    await form.get_by_label("Unit").fill("tokens")
    # Someone else activates it meanwhile: the edit is refused, and the console says why.
    await gql('mutation { activateMeter(meterApiName: "raced") { __typename } }')
    await form.get_by_role("button", name="Save meter").click()
    await expect(page.get_by_role("status").filter(has_text="Only a draft meter")).to_contain_text(
        "this one is active"
    )


async def test_credits_are_granted_and_read_in_the_ledger(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await plan_for(gql, "wallet-ui")
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/credits")
    form = page.get_by_role("form", name="Grant credits")
    await form.get_by_label("Customer ID").fill("wallet-ui")
    await form.get_by_label("Amount").fill("25")
    await form.get_by_label("Reason").fill("welcome")
    await form.get_by_role("button", name="Grant").click()
    await expect(page).to_have_url(re.compile(r"/console/credits\?customer=wallet-ui$"))
    await expect(page.get_by_text("Balance:")).to_contain_text("$25.00")
    ledger = page.get_by_role("table", name="Ledger")
    await expect(ledger.locator("tbody tr")).to_have_count(1)
    await expect(ledger.locator("tbody tr")).to_contain_text("GRANT")
    await expect(ledger.locator("tbody tr")).to_contain_text("welcome")
    await axe(page, "credits with a ledger")


async def test_a_webhook_endpoint_is_created_with_its_secret_shown_once(
    visit: Visit, account: TestAccount
) -> None:
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/webhooks")
    form = page.get_by_role("form", name="Create webhook endpoint")
    await form.get_by_label("URL").fill("http://127.0.0.1:9/hooks")
    await form.get_by_label("Event types (comma-separated)").fill("invoice.finalized")
    await form.get_by_role("button", name="Create endpoint").click()
    await expect(page.get_by_role("status").filter(has_text="shown once")).to_contain_text("whsec_")
    endpoints = page.get_by_role("table", name="Webhook endpoints")
    await expect(endpoints.locator("tbody tr")).to_contain_text("invoice.finalized")
    await page.get_by_role("button", name="Disable http://127.0.0.1:9/hooks").click()
    await expect(endpoints.locator("tbody tr")).to_contain_text("disabled")
    await expect(page.get_by_role("status")).not_to_contain_text("whsec_")


async def test_the_ingest_panel_shows_each_event_outcome_with_its_reason(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls")
    millis = now_ms()
    batch = [
        {"meterApiName": "calls", "customerId": "j", "meterValue": 1, "meterTimeInMillis": millis,
         "uniqueId": "same"},
        {"meterApiName": "calls", "customerId": "j", "meterValue": 1, "meterTimeInMillis": millis,
         "uniqueId": "same"},
        {"meterApiName": "calls", "customerId": "j", "meterValue": "NaN",
         "meterTimeInMillis": millis, "uniqueId": "bad"},
    ]  # fmt: skip
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/events")
    await page.get_by_role("button", name="Ingest", exact=True).click()
    await page.get_by_role("button", name="JSON").click()
    panel = page.get_by_role("form", name="Ingest events")
    await panel.get_by_label("Events (a JSON list of MeterEventInput)").fill(json.dumps(batch))
    await panel.get_by_role("button", name="Send events").click()
    await expect(page.locator(".ingest-result")).to_have_text(
        re.compile(r"1 accepted, 1\s+duplicates, 1 rejected")
    )
    outcomes = page.get_by_role("table", name="Outcomes").locator("tbody tr")
    await expect(outcomes.nth(1)).to_contain_text("DUPLICATE")
    await expect(outcomes.nth(2)).to_contain_text("REJECTED")
    assert ":" in await outcomes.nth(2).locator("td").nth(3).inner_text()  # code: message


async def test_the_plan_builder_previews_every_price_model_through_the_server(
    visit: Visit, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    page = visit.page
    await visit.sign_in(account.admin_key, "/console/plans")
    await page.get_by_role("button", name="New plan").click()
    builder = page.get_by_role("form", name="Plan builder")
    output = builder.locator("output")
    model = builder.get_by_role("combobox", name=re.compile("^Price model"))
    await builder.get_by_label("Meter").fill("calls")
    await builder.get_by_label("Preview quantity").fill("150")
    await builder.get_by_label("Unit price").fill("0.02")
    await expect(output).to_contain_text("$3.00 for 150 units")
    await model.select_option("graduated")
    await builder.get_by_label(re.compile("^Tiers")).fill("100,0.10,1\n,0.015")
    await expect(output).to_contain_text("$11.75 for 150 units")  # 1 + 10 + 0.75
    await model.select_option("volume")
    await expect(output).to_contain_text("$2.25 for 150 units")  # all 150 at 0.015
    await model.select_option("percentage")
    await builder.get_by_label("Percent", exact=True).fill("2.5")
    await expect(output).to_contain_text("$3.75 for 150 units")
    await model.select_option("dimension")
    await builder.get_by_label("Price model JSON").fill(
        json.dumps(
            {
                "type": "dimension",
                "dimensions": ["region"],
                "prices": [{"values": ["eu"], "model": {"type": "per_unit", "unitPrice": "1"}}],
            }
        )
    )
    await builder.get_by_label("Preview dimension values (comma-separated)").fill("eu")
    await expect(output).to_contain_text("$150.00 for 150 units")
    await model.select_option("package")
    await builder.get_by_label("Package size").fill("0")
    await builder.get_by_label("Package price").fill("5")
    await expect(output).to_contain_text("Cannot price: priceModel.packageSize must be positive")
    # Fixed, the plan is created with a fee and a fixed discount.
    await builder.get_by_label("Package size").fill("1000")
    await builder.get_by_label("Plan name").fill("Fees and discount")
    await builder.get_by_label("Fee name").fill("platform")
    await builder.get_by_label("Fee amount").fill("10")
    await builder.get_by_label("Discount name").fill("launch")
    await builder.get_by_label("Discount kind").select_option("FIXED")
    await builder.get_by_label("Discount value").fill("3")
    await builder.get_by_role("button", name="Create plan").click()
    await expect(page.get_by_role("heading", name="Fees and discount", exact=True)).to_be_visible()
    terms = json.loads(await page.locator("pre").inner_text())
    assert [f["name"] for f in terms["fees"]] == ["platform"]
    assert [(d["name"], d["kind"]) for d in terms["discounts"]] == [("launch", "FIXED")]
