"""Scale-out: two API processes (`meterflow serve --workers 2`, one port) and two workers
against one database, ingesting for several accounts at once, with one worker killed (-9)
part-way and a new one started in its place. Every usage total and every running invoice is
exact: the expected figures are computed here from the events sent."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from meterflow.db import SessionFactory, unit_of_work
from meterflow.services import accounts
from tests.billing_setup import per_unit_account
from tests.conftest import running_server
from tests.test_worker_faults import worker_process

ACCOUNTS = 3
CUSTOMERS = 5
BATCHES = 24  # per account
BATCH = 200
RESENT = 4  # batches per account sent twice: the second time all duplicates

PAGE = """{ customers(first: 50) { edges { node { customerId
    currentUsage { meterApiName value } currentInvoice { total } } } } }"""


@pytest.fixture
def api(server_env: dict[str, str]) -> Iterator[str]:
    with running_server(server_env, args=["--workers", "2"]) as base_url:
        yield base_url


async def seeded_accounts(factory: SessionFactory, now: datetime) -> list[tuple[uuid.UUID, str]]:
    """Accounts with a SUM meter `calls` at 1.00 a call on a default plan (customers made by
    their first event join it), each with an admin key."""
    made = []
    for n in range(ACCOUNTS):
        async with unit_of_work(factory) as session:
            account_id, _ = await per_unit_account(
                session, name=f"scale {n}", unit_price="1", is_default=True, now=now
            )
            issued = await accounts.issue_api_key(
                session, account_id=account_id, name="k", scope=accounts.ApiKeyScope.ADMIN
            )
        made.append((account_id, issued.secret))
    return made


def batch_of(batch: int, at_millis: int) -> list[dict[str, Any]]:
    return [
        {
            "meterApiName": "calls",
            "customerId": f"s{(batch * BATCH + i) % CUSTOMERS}",
            "meterValue": 1 + (batch * BATCH + i) % 7,
            "meterTimeInMillis": at_millis + i,
            "uniqueId": f"{batch}-{i}",
        }
        for i in range(BATCH)
    ]


async def test_two_api_processes_and_two_workers_one_killed_keep_every_total_exact(
    session_factory: SessionFactory, api: str, server_env: dict[str, str], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    at_millis = int(max(month_start, now - timedelta(minutes=2)).timestamp() * 1000)
    tenants = await seeded_accounts(session_factory, now)
    expected: dict[str, Counter[str]] = {key: Counter() for _, key in tenants}
    work: list[tuple[str, list[dict[str, Any]], bool]] = []
    for _, key in tenants:
        for b in range(BATCHES):
            events = batch_of(b, at_millis)
            for e in events:
                expected[key][e["customerId"]] += e["meterValue"]
            work.append((key, events, False))
        work += [(key, batch_of(b, at_millis), True) for b in range(RESENT)]
    # Interleave the accounts, resends after their first sending.
    work.sort(key=lambda w: (w[2], int(w[1][0]["uniqueId"].split("-")[0]), w[0]))

    with ExitStack() as stack:
        first = stack.enter_context(worker_process(server_env, tmp_path / "w1.log"))
        stack.enter_context(worker_process(server_env, tmp_path / "w2.log"))
        answers: list[tuple[bool, dict[str, Any]]] = []
        in_flight = asyncio.Semaphore(8)
        sent = 0
        killed = asyncio.Event()

        async with httpx.AsyncClient(base_url=api, timeout=60) as http:

            async def send(key: str, events: list[dict[str, Any]], resent: bool) -> None:
                nonlocal sent
                async with in_flight:
                    response = await http.post(
                        "/ingest?format=json", json=events, headers={"X-API-Key": key}
                    )
                    assert response.status_code == 200, response.text
                    answers.append((resent, response.json()))
                    sent += 1
                    if sent == len(work) // 2 and not killed.is_set():
                        killed.set()
                        os.kill(first.pid, signal.SIGKILL)  # mid-load, work in hand
                        stack.enter_context(worker_process(server_env, tmp_path / "w3.log"))

            await asyncio.gather(*(send(*w) for w in work))
            assert killed.is_set() and first.wait(5) == -signal.SIGKILL

            # Every event answered once: accepted the first time, a duplicate the second.
            assert sum(a["accepted"] for r, a in answers if not r) == ACCOUNTS * BATCHES * BATCH
            assert sum(a["duplicates"] for r, a in answers if not r) == 0
            assert sum(a["duplicates"] for r, a in answers if r) == ACCOUNTS * RESENT * BATCH
            assert sum(a["accepted"] for r, a in answers if r) == 0

            async def figures(key: str) -> dict[str, tuple[Decimal, Decimal]]:
                response = await http.post(
                    "/graphql", json={"query": PAGE}, headers={"X-API-Key": key}
                )
                body = response.json()
                assert "errors" not in body, body
                return {
                    e["node"]["customerId"]: (
                        Decimal(e["node"]["currentUsage"][0]["value"]),
                        Decimal(e["node"]["currentInvoice"]["total"])
                        if e["node"]["currentInvoice"]
                        else Decimal(-1),
                    )
                    for e in body["data"]["customers"]["edges"]
                }

            def by_hand(key: str) -> dict[str, tuple[Decimal, Decimal]]:
                # 1.00 a call: the invoice total is the usage, in dollars.
                return {c: (Decimal(v), Decimal(v)) for c, v in expected[key].items()}

            async def all_caught_up() -> bool:
                return all([await figures(key) == by_hand(key) for _, key in tenants])

            deadline = asyncio.get_running_loop().time() + 90
            while not await all_caught_up():
                if asyncio.get_running_loop().time() > deadline:
                    shown = {key[:8]: await figures(key) for _, key in tenants}
                    wanted = {key[:8]: by_hand(key) for _, key in tenants}
                    pytest.fail(f"usage never caught up: {shown} != {wanted}")
                await asyncio.sleep(0.25)
            # Nothing arrives late and twice: the figures stay put.
            await asyncio.sleep(3)
            assert await all_caught_up()
