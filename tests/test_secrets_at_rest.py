"""What the database holds: session tokens only as hashes, webhook secrets and webhook/Slack
URLs only encrypted; everything still works through the API and the worker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from meterflow.db import SessionFactory
from meterflow.secretbox import SecretBox
from tests.client import GraphQLClient, TestAccount
from tests.conftest import TEST_SECRET_KEY
from tests.helpers import create_meter, ingest
from tests.test_alerts import (  # noqa: F401  (alert_worker and mailbox are fixtures)
    CREATE,
    SECRET,
    Receiver,
    _async,
    alert_worker,
    hours,
    mailbox,
    until,
    verify,
)

SESSION = """mutation($c: String!) { createCustomerSession(customerId: $c) {
    __typename ... on CustomerSession { token } ... on Error { message } } }"""
REVOKE = """mutation($t: String!) { revokeCustomerSession(token: $t) {
    __typename ... on RevokedSession { revoked } ... on Error { message } } }"""
ME = '{ customer(customerId: "tok") { customerId } }'


async def rows_as_text(
    factory: SessionFactory, table: str, account: TestAccount, where: str = ""
) -> str:
    """Every column of the account's rows, as the database holds them."""
    async with factory() as session:
        rows = await session.scalars(
            text(f"SELECT row_to_json(t)::text FROM {table} t WHERE account_id = :a {where}"),
            {"a": account.account_id},
        )
        return "\n".join(rows)


async def test_session_tokens_are_stored_as_hashes_and_still_work(
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    session_factory: SessionFactory,
    account: TestAccount,
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "tok"}) { __typename } }')
    created = await gql(SESSION, {"c": "tok"})
    token = created["createCustomerSession"]["token"]
    token_id, signature = token.removeprefix("mfs_").split(".")

    stored = await rows_as_text(session_factory, "customer_sessions", account)
    assert stored, "no session row"
    for part in (token, token_id, signature):
        assert part not in stored
    async with session_factory() as session:
        columns = set(
            await session.scalars(
                text(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = 'customer_sessions'"
                )
            )
        )
    assert "token_id" not in columns and "token_hash" in columns

    me = await http.post(
        "/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )
    assert me.json() == {"data": {"customer": {"customerId": "tok"}}}
    revoked = await gql(REVOKE, {"t": token})
    assert revoked["revokeCustomerSession"] == {"__typename": "RevokedSession", "revoked": True}
    again = await http.post(
        "/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )
    assert again.status_code == 401
    assert again.json()["errors"][0]["message"] == "session token revoked"


@pytest.mark.usefixtures("alert_worker")
async def test_webhook_secrets_and_urls_are_encrypted_and_deliveries_still_signed(
    gql: GraphQLClient,
    session_factory: SessionFactory,
    account: TestAccount,
) -> None:
    webhook, slack = Receiver(), Receiver()
    slack_url = slack.url + "/services/T000/B000/slack-credential-in-the-path"
    # Long enough that its sealed form outgrows the 2,000 characters a delivery row once had.
    webhook_url = webhook.url + "?token=" + "t" * 1800
    try:
        await create_meter(gql, "usage-hours")
        rule = await gql(
            CREATE,
            {
                "input": {
                    "name": "sealed channels",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "GREATER_THAN",
                    "threshold": "10",
                    "range": "DAY",
                    "channels": [
                        {"type": "WEBHOOK", "target": webhook_url, "secret": SECRET},
                        {"type": "SLACK", "target": slack_url},
                        {"type": "EMAIL", "target": "ops@example.com"},
                    ],
                }
            },
        )
        assert rule["createAlertRule"]["__typename"] == "AlertRule", rule
        stored = await rows_as_text(session_factory, "alert_rules", account)
        assert "sealed channels" in stored  # the row is there...
        for clear in (SECRET, webhook_url, "slack-credential-in-the-path", "127.0.0.1"):
            assert clear not in stored  # ...but not its credentials
        # The admin API shows the targets back in clear.
        listed = (await gql("{ alertRules { channels { type target } } }"))["alertRules"]
        assert listed[0]["channels"] == [
            {"type": "WEBHOOK", "target": webhook_url},
            {"type": "SLACK", "target": slack_url},
            {"type": "EMAIL", "target": "ops@example.com"},
        ]

        await ingest(gql, [hours("big", 11, datetime.now(UTC) - timedelta(seconds=5))])
        await until(lambda: _async(len(webhook.requests) == 1 and len(slack.requests) == 1))
        # The worker decrypted the secret and signed with it, and found the Slack URL.
        assert verify(webhook.requests[0][1], webhook.requests[0][2])["data"]["value"] == "11"
        assert "big" in json.loads(slack.requests[0][2])["text"]

        async def settled() -> str | None:
            rows = await rows_as_text(session_factory, "alert_deliveries", account)
            return rows if rows.count('"status":"DELIVERED"') == 3 else None

        deliveries = await until(settled)
        for clear in (webhook_url, "slack-credential-in-the-path", "127.0.0.1"):
            assert clear not in deliveries
        events = (await gql("{ alertEvents { deliveries { channel target status } } }"))[
            "alertEvents"
        ]
        assert {d["channel"]: d["target"] for d in events[0]["deliveries"]} == {
            "WEBHOOK": webhook_url,
            "SLACK": slack_url,
            "EMAIL": "ops@example.com",
        }
    finally:
        webhook.close()
        slack.close()


@pytest.mark.usefixtures("alert_worker")
async def test_a_rule_written_before_encryption_still_delivers(
    gql: GraphQLClient,
    session_factory: SessionFactory,
    account: TestAccount,
) -> None:
    """Legacy rows (clear secret and URL) keep working; disabling the rule seals them."""
    webhook = Receiver()
    try:
        await create_meter(gql, "usage-hours")
        rule = await gql(
            CREATE,
            {
                "input": {
                    "name": "legacy",
                    "subject": "USAGE",
                    "meterApiName": "usage-hours",
                    "condition": "GREATER_THAN",
                    "threshold": "10",
                    "range": "DAY",
                    "channels": [{"type": "WEBHOOK", "target": webhook.url, "secret": SECRET}],
                }
            },
        )
        rule_id = rule["createAlertRule"]["id"]
        legacy = [{"type": "WEBHOOK", "target": webhook.url, "secret": SECRET}]
        async with session_factory() as session:
            await session.execute(
                text("UPDATE alert_rules SET channels = CAST(:c AS jsonb) WHERE id = :id"),
                {"c": json.dumps(legacy), "id": rule_id},
            )
            await session.commit()
        await ingest(gql, [hours("old", 11, datetime.now(UTC) - timedelta(seconds=5))])
        await until(lambda: _async(len(webhook.requests) == 1))
        assert verify(webhook.requests[0][1], webhook.requests[0][2])["data"]["customerId"] == "old"

        await gql("mutation($id: ID!) { deleteAlertRule(id: $id) { __typename } }", {"id": rule_id})
        stored = await rows_as_text(session_factory, "alert_rules", account)
        assert SECRET not in stored and webhook.url not in stored
        box = SecretBox(TEST_SECRET_KEY)
        async with session_factory() as session:
            channels = await session.scalar(
                text("SELECT channels FROM alert_rules WHERE id = :id"), {"id": rule_id}
            )
        assert channels is not None
        assert box.open(channels[0]["secret"]) == SECRET
        assert box.open(channels[0]["target"]) == webhook.url
    finally:
        webhook.close()


async def test_a_generated_signing_secret_is_sealed_too(
    gql: GraphQLClient, session_factory: SessionFactory, account: TestAccount
) -> None:
    """The secret meterflow generates for a WEBHOOK channel given none is shown once, in the
    answer, and stored like a given one: encrypted."""
    await create_meter(gql, "usage-hours")
    created = await gql(
        CREATE,
        {
            "input": {
                "name": "generated secret",
                "subject": "USAGE",
                "meterApiName": "usage-hours",
                "condition": "GREATER_THAN",
                "threshold": "10",
                "range": "DAY",
                "channels": [{"type": "WEBHOOK", "target": "https://93.184.216.34/hook"}],
            }
        },
    )
    rule = created["createAlertRule"]
    generated = rule["channels"][0]["signingSecret"]
    assert generated.startswith("whsec_"), created
    stored = await rows_as_text(session_factory, "alert_rules", account)
    assert "generated secret" in stored and generated not in stored
    async with session_factory() as session:
        channels = await session.scalar(
            text("SELECT channels FROM alert_rules WHERE id = :id"), {"id": rule["id"]}
        )
    assert channels is not None
    assert SecretBox(TEST_SECRET_KEY).open(channels[0]["secret"]) == generated
