"""METERFLOW_SECRET_KEY: `serve` and `worker` refuse to start without a usable one and say how
to set one; commands that need no secret run without it."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest
from sqlalchemy import text

from meterflow import webhook_signing
from meterflow.db import SessionFactory
from meterflow.secretbox import SecretBox, UnreadableSecretError
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT, TEST_SECRET_KEY, running_server
from tests.helpers import create_meter

SIGNING_SECRET = webhook_signing.new_secret()

NEW_KEY = "the-next-secret-key-0123456789abcdefghij"


def run(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "meterflow.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"`meterflow {' '.join(args)}` started instead of refusing") from exc


def without_key(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != "METERFLOW_SECRET_KEY"}


@pytest.mark.parametrize("command", [["serve", "--host", "127.0.0.1", "--port", "9"], ["worker"]])
def test_serve_and_worker_refuse_to_start_without_a_secret_key(
    command: list[str], server_env: dict[str, str]
) -> None:
    result = run(*command, env=without_key(server_env))
    assert result.returncode == 2, result.stderr
    assert "METERFLOW_SECRET_KEY is not set" in result.stderr
    assert "export METERFLOW_SECRET_KEY=" in result.stderr
    assert "secrets.token_urlsafe(48)" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["serve", "--host", "127.0.0.1", "--port", "9"], ["worker"]])
def test_serve_and_worker_refuse_a_short_secret_key(
    command: list[str], server_env: dict[str, str]
) -> None:
    short = "x" * 31
    result = run(*command, env={**server_env, "METERFLOW_SECRET_KEY": short})
    assert result.returncode == 2, result.stderr
    assert "is 31 characters long; it must be at least 32" in result.stderr
    assert "export METERFLOW_SECRET_KEY=" in result.stderr
    assert short not in result.stderr  # the (bad) key itself is never echoed
    assert "Traceback" not in result.stderr


def test_migrate_account_and_schema_need_no_secret_key(server_env: dict[str, str]) -> None:
    env = without_key(server_env)
    assert run("migrate", env=env).returncode == 0
    assert run("schema", env=env).returncode == 0
    created = run("account", "create", "No secret needed", "--json", env=env)
    assert created.returncode == 0, created.stderr


async def test_rotate_secrets_moves_stored_credentials_to_the_new_key(
    gql: GraphQLClient, session_factory: SessionFactory, server_env: dict[str, str]
) -> None:
    """New key current, old one previous: `rotate-secrets` re-encrypts, after which the old
    key is no longer needed to read them. Rotated back at the end (the database is shared)."""
    await create_meter(gql, "rotated")
    created = await gql(
        """mutation($input: CreateAlertRuleInput!) { createAlertRule(input: $input) {
        ... on AlertRule { id } } }""",
        {
            "input": {
                "name": "rotated",
                "subject": "USAGE",
                "meterApiName": "rotated",
                "condition": "GREATER_THAN",
                "threshold": "1",
                "range": "DAY",
                "channels": [
                    {
                        "type": "WEBHOOK",
                        "target": "https://93.184.216.34/h",
                        "secret": SIGNING_SECRET,
                    }
                ],
            }
        },
    )
    rule_id = created["createAlertRule"]["id"]

    async def stored() -> dict[str, str]:
        async with session_factory() as session:
            channels = await session.scalar(
                text("SELECT channels FROM alert_rules WHERE id = :id"), {"id": rule_id}
            )
        assert channels is not None
        return channels[0]  # type: ignore[no-any-return]

    def rotate(current: str, previous: str) -> None:
        env = {**server_env, "METERFLOW_SECRET_KEY": current}
        env["METERFLOW_PREVIOUS_SECRET_KEYS"] = json.dumps([previous])
        result = run("rotate-secrets", env=env)
        assert result.returncode == 0, result.stderr
        assert "re-encrypted" in result.stdout

    before = await stored()
    assert SecretBox(TEST_SECRET_KEY).open(before["secret"]) == SIGNING_SECRET
    rotate(NEW_KEY, TEST_SECRET_KEY)
    try:
        after = await stored()
        assert after["secret"] != before["secret"]
        assert SecretBox(NEW_KEY).open(after["secret"]) == SIGNING_SECRET
        assert SecretBox(NEW_KEY).open(after["target"]) == "https://93.184.216.34/h"
        with pytest.raises(UnreadableSecretError):
            SecretBox(TEST_SECRET_KEY).open(after["secret"])
    finally:
        rotate(TEST_SECRET_KEY, NEW_KEY)
    assert SecretBox(TEST_SECRET_KEY).open((await stored())["secret"]) == SIGNING_SECRET


def test_rotate_secrets_needs_the_secret_key(server_env: dict[str, str]) -> None:
    result = run("rotate-secrets", env=without_key(server_env))
    assert result.returncode == 2
    assert "METERFLOW_SECRET_KEY is not set" in result.stderr


async def test_tokens_signed_with_a_previous_key_verify_until_it_is_dropped(
    gql: GraphQLClient, account: TestAccount, server_env: dict[str, str]
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "rot"}) { __typename } }')
    mint = (
        'mutation { createCustomerSession(customerId: "rot") { ... on CustomerSession { token } } }'
    )
    me = {"query": '{ customer(customerId: "rot") { customerId } }'}
    old_token = (await gql(mint))["createCustomerSession"]["token"]

    rotated = {
        **server_env,
        "METERFLOW_SECRET_KEY": NEW_KEY,
        "METERFLOW_PREVIOUS_SECRET_KEYS": json.dumps([TEST_SECRET_KEY]),
    }
    with running_server(rotated) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            answer = await client.post("/graphql", json=me, headers=bearer(old_token))
            assert answer.json() == {"data": {"customer": {"customerId": "rot"}}}
            minted = await client.post(
                "/graphql", json={"query": mint}, headers={"X-API-Key": account.admin_key}
            )
            new_token = minted.json()["data"]["createCustomerSession"]["token"]

    # The old key dropped: its tokens stop verifying, the new key's keep working.
    with running_server({**server_env, "METERFLOW_SECRET_KEY": NEW_KEY}) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            refused = await client.post("/graphql", json=me, headers=bearer(old_token))
            assert refused.status_code == 401
            assert refused.json()["errors"][0]["message"] == "invalid session token"
            answer = await client.post("/graphql", json=me, headers=bearer(new_token))
            assert answer.json() == {"data": {"customer": {"customerId": "rot"}}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
