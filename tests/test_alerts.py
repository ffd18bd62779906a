"""Alerts end to end: rules over GraphQL, a worker evaluating them, deliveries to local
receivers (an HTTP server for webhooks and Slack, a real SMTP server)."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from redis.asyncio import Redis
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from meterflow import webhook_signing
from meterflow.jobs import JobQueue
from meterflow.workers import rollup
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT, free_port
from tests.helpers import create_meter, ingest, until
from tests.ws import connect

SECRET = webhook_signing.new_secret()
CREATE = """mutation($input: CreateAlertRuleInput!) { createAlertRule(input: $input) {
    __typename ... on AlertRule { id channels { type signingSecret } }
    ... on ValidationError { field } ... on Error { message } } }"""
EVENTS = """query($c: String) { alertEvents(customerId: $c) { id customerId value message
    deliveries { channel status attempts lastStatusCode lastError } } }"""


class Receiver:
    """An HTTP endpoint that records what it gets and fails the first `fail` requests."""

    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append((time.monotonic(), dict(self.headers), body))
                failing = len(receiver.requests) <= receiver.fail
                self.send_response(500 if failing else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture(scope="module")
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture(scope="module")
def alert_worker(
    server_env: dict[str, str], mailbox: tuple[Mailbox, int]
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **server_env,
        "METERFLOW_SMTP_PORT": str(mailbox[1]),
        "METERFLOW_ALERT_RETRY_BASE_SECONDS": "0.3",
        "METERFLOW_ALERT_MAX_ATTEMPTS": "4",
    }
    process = subprocess.Popen([sys.executable, "-m", "meterflow.cli", "worker"], env=env, cwd=ROOT)
    yield process
    process.terminate()
    process.wait(15)


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET) -> dict[str, Any]:
    """What a receiver does: verify with the standardwebhooks library (signature over
    "<webhook-id>.<webhook-timestamp>.<body>", timestamp within 5 minutes). The webhook-id is
    the alert's id."""
    envelope: dict[str, Any] = Webhook(secret).verify(body, headers)
    named = {k.lower(): v for k, v in headers.items()}
    assert named["webhook-id"] == envelope["id"]
    assert named["webhook-signature"].startswith("v1,")
    with pytest.raises(WebhookVerificationError):  # a forged body is refused
        Webhook(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):  # and so is another secret
        Webhook(webhook_signing.new_secret()).verify(body, headers)
    return envelope


def hours(customer: str, value: float, at: datetime) -> dict[str, Any]:
    return {
        "meterApiName": "usage-hours",
        "customerId": customer,
        "meterValue": value,
        "meterTimeInMillis": int(at.timestamp() * 1000),
        "uniqueId": str(uuid.uuid4()),
    }


async def test_any_customer_over_1000_hours_in_a_week_fires_once(
    server: str,
    gql: GraphQLClient,
    account: TestAccount,
    alert_worker: subprocess.Popen[bytes],
    mailbox: tuple[Mailbox, int],
) -> None:
    box, _ = mailbox
    webhook, slack = Receiver(), Receiver()
    try:
        await create_meter(gql, "usage-hours")
        rule = await gql(
            CREATE,
            {
                "input": {
                    "name": "heavy week",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "GREATER_THAN",
                    "threshold": "1000",
                    "range": "WEEK",
                    "channels": [
                        {"type": "WEBHOOK", "target": webhook.url, "secret": SECRET},
                        {"type": "SLACK", "target": slack.url},
                        {"type": "EMAIL", "target": "ops@example.com"},
                    ],
                }
            },
        )
        assert rule["createAlertRule"]["__typename"] == "AlertRule", rule
        now = datetime.now(UTC) - timedelta(seconds=5)
        mail_before = len(box.messages)
        async with connect(server, {"apiKey": account.admin_key}) as ws:
            await ws.start("""subscription { alertFired { customerId message } }""")
            await ingest(gql, [hours("big", 600, now), hours("small", 100, now)])
            await asyncio.sleep(1)
            assert webhook.requests == []  # not yet over the line
            await ingest(gql, [hours("big", 500, now)])  # crosses 1,000
            fired = await ws.data(within=20)
            assert fired["alertFired"]["customerId"] == "big"
            await until(
                lambda: _async(
                    len(webhook.requests) == 1
                    and len(slack.requests) == 1
                    and len(box.messages) > mail_before
                )
            )
            await ingest(gql, [hours("big", 700, now)])  # still over: no storm
            await asyncio.sleep(2)
        assert len(webhook.requests) == 1 and len(slack.requests) == 1
        envelope = verify(webhook.requests[0][1], webhook.requests[0][2])
        assert envelope["type"] == "alert.fired"
        assert envelope["data"]["customerId"] == "big"
        assert envelope["data"]["value"] == "1100"
        assert not any(h.lower().startswith("meterflow-") for h in webhook.requests[0][1])
        assert "big" in json.loads(slack.requests[0][2])["text"]
        assert b"heavy week" in box.messages[-1]
        events = (await gql(EVENTS, {"c": None}))["alertEvents"]
        assert [e["customerId"] for e in events] == ["big"]
        assert {d["channel"]: d["status"] for d in events[0]["deliveries"]} == {
            "WEBHOOK": "DELIVERED",
            "SLACK": "DELIVERED",
            "EMAIL": "DELIVERED",
        }
    finally:
        webhook.close()
        slack.close()


async def _async(value: Any) -> Any:
    return value


async def test_weekly_drop_of_more_than_20_percent_fires_once_at_week_end(
    gql: GraphQLClient,
    account: TestAccount,
    session_factory: Any,
    redis_url: str,
    alert_worker: subprocess.Popen[bytes],
) -> None:
    webhook = Receiver()
    try:
        await create_meter(gql, "usage-hours")
        this_week = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        this_week -= timedelta(days=this_week.weekday())
        last_week, before = this_week - timedelta(days=7), this_week - timedelta(days=14)
        await ingest(
            gql,
            [
                hours("steady", 100, before + timedelta(days=2)),
                hours("steady", 95, last_week + timedelta(days=2)),
                hours("dropper", 100, before + timedelta(days=1)),
                hours("dropper", 70, last_week + timedelta(days=3)),
            ],
        )
        await gql(
            CREATE,
            {
                "input": {
                    "name": "weekly drop",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "PERCENT_CHANGE",
                    "threshold": "-20",
                    "range": "WEEK",
                    "channels": [{"type": "WEBHOOK", "target": webhook.url, "secret": SECRET}],
                }
            },
        )

        async def rolled_up() -> bool:
            data = await gql(
                """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName:
                "usage-hours", timeGroupingInterval: WEEK, startTime: $s, endTime: $e}) {
                groups { total } } }""",
                {"s": before.isoformat(), "e": this_week.isoformat()},
            )
            return data["usage"]["groups"][0]["total"] == "365"

        await until(rolled_up)
        redis = Redis.from_url(redis_url)
        jobs = JobQueue(redis_url)
        ctx = {"session_factory": session_factory, "jobs": jobs, "redis": redis}
        try:
            assert await rollup.alert_period_ends(ctx) >= 1  # the scheduled evaluation
            assert await rollup.alert_period_ends(ctx) == 0  # once per period
        finally:
            await jobs.close()
            await redis.aclose()
        await until(lambda: _async(len(webhook.requests) == 1))
        await asyncio.sleep(1)
        assert len(webhook.requests) == 1
        envelope = verify(webhook.requests[0][1], webhook.requests[0][2])
        assert envelope["data"]["customerId"] == "dropper"
        assert "-30.0%" in envelope["data"]["message"]
    finally:
        webhook.close()


async def test_receiver_failing_twice_gets_it_exactly_once_and_a_dead_one_is_visible(
    gql: GraphQLClient, alert_worker: subprocess.Popen[bytes]
) -> None:
    flaky, dead = Receiver(fail=2), Receiver(fail=10**6)
    try:
        await create_meter(gql, "usage-hours")
        created = await gql(
            CREATE,
            {
                "input": {
                    "name": "any use",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "GREATER_THAN",
                    "threshold": "0",
                    "range": "DAY",
                    "channels": [
                        {"type": "WEBHOOK", "target": flaky.url, "secret": SECRET},
                        {"type": "WEBHOOK", "target": dead.url},
                    ],
                }
            },
        )
        await ingest(gql, [hours("c", 1, datetime.now(UTC) - timedelta(seconds=5))])

        async def settled() -> Any:
            events = (await gql(EVENTS, {"c": "c"}))["alertEvents"]
            states = {d["status"] for e in events for d in e["deliveries"]}
            return events if events and "PENDING" not in states else None

        events = await until(settled, within=40)
        by_status = {d["status"]: d for d in events[0]["deliveries"]}
        assert by_status["DELIVERED"]["attempts"] == 3
        assert by_status["FAILED"]["attempts"] == 4
        assert by_status["FAILED"]["lastStatusCode"] == 500
        assert len(flaky.requests) == 3
        ids = {verify(h, b)["id"] for _, h, b in flaky.requests}
        webhook_ids = {h["webhook-id"] for _, h, _ in flaky.requests}
        assert webhook_ids == ids == {events[0]["id"]}  # receivers can dedupe by webhook-id
        gaps = [b[0] - a[0] for a, b in zip(dead.requests, dead.requests[1:], strict=False)]
        assert len(dead.requests) == 4
        assert gaps == sorted(gaps) and gaps[-1] > 1.5 * gaps[0]  # backing off
        # The channel given no secret signs with the one generated for it.
        generated = created["createAlertRule"]["channels"][1]["signingSecret"]
        assert {verify(h, b, generated)["id"] for _, h, b in dead.requests} == {events[0]["id"]}
    finally:
        flaky.close()
        dead.close()


async def test_a_webhook_given_no_secret_gets_one_shown_once_and_signed_with(
    gql: GraphQLClient, alert_worker: subprocess.Popen[bytes]
) -> None:
    webhook, given, slack = Receiver(), Receiver(), Receiver()
    try:
        await create_meter(gql, "usage-hours")
        created = await gql(
            CREATE,
            {
                "input": {
                    "name": "generated",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "GREATER_THAN",
                    "threshold": "0",
                    "range": "DAY",
                    "channels": [
                        {"type": "WEBHOOK", "target": webhook.url},
                        {"type": "WEBHOOK", "target": given.url, "secret": SECRET},
                        {"type": "SLACK", "target": slack.url},
                        {"type": "EMAIL", "target": "ops@example.com"},
                    ],
                }
            },
        )
        rule = created["createAlertRule"]
        assert rule["__typename"] == "AlertRule", created
        shown = [(c["type"], c["signingSecret"]) for c in rule["channels"]]
        generated = shown[0][1]
        assert webhook_signing.is_valid_secret(generated) and generated != SECRET
        assert shown == [
            ("WEBHOOK", generated),
            ("WEBHOOK", SECRET),
            ("SLACK", None),
            ("EMAIL", None),
        ]
        # Shown once: never again, neither by alertRules nor by deleteAlertRule.
        listed = (await gql("{ alertRules { channels { type signingSecret } } }"))["alertRules"]
        assert [c["signingSecret"] for c in listed[0]["channels"]] == [None] * 4

        await ingest(gql, [hours("gen", 1, datetime.now(UTC) - timedelta(seconds=5))])
        await until(lambda: _async(len(webhook.requests) == len(given.requests) == 1))
        assert (
            verify(webhook.requests[0][1], webhook.requests[0][2], generated)["data"]["customerId"]
            == "gen"
        )
        assert verify(given.requests[0][1], given.requests[0][2], SECRET)["data"]["value"] == "1"
        deleted = await gql(
            """mutation($id: ID!) { deleteAlertRule(id: $id) {
                ... on AlertRule { channels { signingSecret } } } }""",
            {"id": rule["id"]},
        )
        assert [c["signingSecret"] for c in deleted["deleteAlertRule"]["channels"]] == [None] * 4
    finally:
        webhook.close()
        given.close()
        slack.close()


async def test_a_rule_stored_with_a_free_form_secret_is_delivered_unsigned(
    gql: GraphQLClient, session_factory: Any, alert_worker: subprocess.Popen[bytes]
) -> None:
    """Rules from before whsec_ secrets were required may hold any secret, or none: they still
    deliver (with webhook-id and webhook-timestamp), but no signature a receiver would accept."""
    legacy, unsigned = Receiver(), Receiver()
    try:
        await create_meter(gql, "usage-hours")
        created = await gql(
            CREATE,
            {
                "input": {
                    "name": "legacy secret",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "GREATER_THAN",
                    "threshold": "0",
                    "range": "DAY",
                    "channels": [{"type": "WEBHOOK", "target": legacy.url}],
                }
            },
        )
        old = [
            {"type": "WEBHOOK", "target": legacy.url, "secret": "hunter2"},
            {"type": "WEBHOOK", "target": unsigned.url},
        ]
        async with session_factory() as session:
            await session.execute(
                text("UPDATE alert_rules SET channels = CAST(:c AS jsonb) WHERE id = :id"),
                {"c": json.dumps(old), "id": created["createAlertRule"]["id"]},
            )
            await session.commit()
        await ingest(gql, [hours("old", 1, datetime.now(UTC) - timedelta(seconds=5))])
        await until(lambda: _async(len(legacy.requests) == len(unsigned.requests) == 1))
        event_id = (await gql(EVENTS, {"c": "old"}))["alertEvents"][0]["id"]
        for receiver in (legacy, unsigned):
            _, headers, body = receiver.requests[0]
            assert headers["webhook-id"] == json.loads(body)["id"] == event_id
            assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
            assert "webhook-signature" not in headers
            with pytest.raises(WebhookVerificationError):
                Webhook(SECRET).verify(body, headers)
    finally:
        legacy.close()
        unsigned.close()


@pytest.mark.parametrize(
    "secret",
    [
        "hunter2",
        "whsec_!!!",
        "whsec_" + base64.b64encode(b"8 bytes!").decode(),
        "whsec_" + base64.b64encode(bytes(65)).decode(),
        "",
    ],
)
async def test_a_webhook_secret_that_is_no_whsec_secret_is_refused(
    gql: GraphQLClient, secret: str
) -> None:
    await create_meter(gql, "usage-hours")
    refused = await gql(
        CREATE,
        {
            "input": {
                "name": "bad secret",
                "subject": "USAGE",
                "meterApiName": "usage-hours",
                "condition": "GREATER_THAN",
                "threshold": "0",
                "range": "DAY",
                "channels": [
                    {"type": "EMAIL", "target": "ops@example.com"},
                    {"type": "WEBHOOK", "target": "https://93.184.216.34/hook", "secret": secret},
                ],
            }
        },
    )
    result = refused["createAlertRule"]
    assert result["__typename"] == "ValidationError", result
    assert result["field"] == "channels[1].secret"
    assert "whsec_ followed by the base64 of 24 to 64 random bytes" in result["message"]
    assert not secret or secret not in result["message"]  # a credential: never echoed
    assert (await gql("{ alertRules { id } }"))["alertRules"] == []


async def test_slack_and_email_channels_keep_taking_any_secret(gql: GraphQLClient) -> None:
    """Unchanged for them: a secret given is stored sealed and unused (they are not signed)."""
    await create_meter(gql, "usage-hours")
    created = await gql(
        CREATE,
        {
            "input": {
                "name": "unsigned kinds",
                "subject": "USAGE",
                "meterApiName": "usage-hours",
                "condition": "GREATER_THAN",
                "threshold": "0",
                "range": "DAY",
                "channels": [
                    {"type": "SLACK", "target": "https://93.184.216.34/s", "secret": "hunter2"},
                    {"type": "EMAIL", "target": "ops@example.com", "secret": "x"},
                ],
            }
        },
    )
    rule = created["createAlertRule"]
    assert rule["__typename"] == "AlertRule", created
    assert [c["signingSecret"] for c in rule["channels"]] == [None, None]


async def test_undefined_meters_and_customers_are_noticed(gql: GraphQLClient) -> None:
    await create_meter(gql, "usage-hours")
    await gql("mutation { updateAccount(input: {autoCreateCustomers: false}) { __typename } }")
    await gql('mutation { createCustomer(input: {customerId: "known"}) { __typename } }')
    now = datetime.now(UTC) - timedelta(seconds=5)
    typo = {**hours("known", 1, now), "meterApiName": "usage-hour"}
    result = await ingest(
        gql, [typo, {**typo, "uniqueId": "2"}, hours("ghost", 1, now), hours("known", 1, now)]
    )
    assert (result["accepted"], result["rejected"]) == (1, 3)
    await ingest(gql, [{**typo, "uniqueId": "3"}])
    notices = (await gql("{ notices { kind subject count } }"))["notices"]
    assert sorted((n["kind"], n["subject"], n["count"]) for n in notices) == [
        ("UNDEFINED_CUSTOMER", "ghost", 1),
        ("UNDEFINED_METER", "usage-hour", 3),
    ]
