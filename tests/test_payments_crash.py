"""A worker killed with -9 between two Stripe calls, then a new worker: the invoice reaches
Stripe once — one customer, one invoice, each item once — through the real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT
from tests.fake_stripe import FakeStripe
from tests.helpers import ingest, until
from tests.test_payments_stripe import (
    CURRENT,
    FINALIZE,
    api_monetization,
    calls,
    connect_stripe,
    invoice_of,
)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe:
        yield stripe


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "meterflow.cli", "worker"], env=env, cwd=ROOT)


@pytest.mark.parametrize("step", ["customer", "invoice", "item:0"])
async def test_worker_killed_between_stripe_steps_then_a_new_one_finishes_once(
    server_env: dict[str, str],
    gql: GraphQLClient,
    account: TestAccount,
    fake: FakeStripe,
    step: str,
) -> None:
    env = {**server_env, "METERFLOW_STRIPE_API_BASE": fake.url}
    await connect_stripe(gql)
    await api_monetization(gql, "crashy")
    await ingest(gql, calls("crashy", 6, 1000))  # 1,000 over the free 5,000: $5.00
    invoice_id = (await gql(CURRENT, {"c": "crashy"}))["currentInvoice"]["id"]
    doomed = start_worker({**env, "METERFLOW_TEST_HOOK_STRIPE_PAUSE_AFTER": step})
    replacement = None
    try:
        final = (await gql(FINALIZE, {"id": invoice_id}))["finalizeInvoice"]
        assert final["total"] == "5.00", final

        def ours() -> list[dict[str, Any]]:
            return [
                c
                for c in fake.customers()
                if c["metadata"].get("meterflow_account_id") == str(account.account_id)
            ]

        def reached() -> bool:
            keys = {r.idempotency_key for r in fake.posts("/v1/")}
            wanted = {
                "customer": None,
                "invoice": f"meterflow:invoice:{invoice_id}:invoice",
                "item:0": f"meterflow:invoice:{invoice_id}:item:0",
            }[step]
            return bool(ours()) if wanted is None else wanted in keys

        async def paused() -> bool:
            return reached()

        await until(paused, within=30)  # Stripe did the step; the worker has not stored it
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(10)
        replacement = start_worker(env)

        async def synced() -> dict[str, Any] | None:
            node = await invoice_of(gql, "crashy")
            payment = node["payment"]
            return node if payment and payment["hostedInvoiceUrl"] else None

        node = await until(synced, within=60)
    finally:
        for process in (doomed, replacement):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(15)
    mine = [i for i in fake.invoices() if i["metadata"].get("meterflow_invoice_id") == invoice_id]
    assert len(mine) == 1
    assert len(ours()) == 1
    assert [item["amount"] for item in fake.items(mine[0]["id"])] == [500]
    assert mine[0]["status"] == "open" and node["payment"]["externalId"] == mine[0]["id"]
    replays = [r for r in fake.requests if r.replayed and r.api_key]
    assert replays, "the step the killed worker did was replayed, not done again"
