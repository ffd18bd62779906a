"""The demo account `meterflow dev` creates on an empty database (Amberflo's examples)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.models import Account, ApiKeyScope, MeterType, PeriodInterval
from meterflow.pricing.invoice import Fee
from meterflow.services import accounts, customers, meters, plans, wallets
from meterflow.services.meters import MeterSpec
from meterflow.services.plans import ItemSpec, PlanSpec

DEMO_METERS: list[tuple[str, MeterSpec]] = [
    (
        "api-calls",
        MeterSpec(
            label="API calls",
            meter_type=MeterType.SUM,
            unit="calls",
            dimensions=("region", "endpoint"),
        ),
    ),
    (
        "gb-seconds",
        MeterSpec(
            label="Function GB-seconds",
            meter_type=MeterType.SUM,
            unit="GB-s",
            dimensions=("function_id", "cloud_provider", "region"),
        ),
    ),
    (
        "active-users",
        MeterSpec(
            label="Monthly active users",
            meter_type=MeterType.UNIQUE_COUNT,
            unit="users",
            dimensions=("user_id",),
            aggregation_dimension="user_id",
        ),
    ),
    (
        "storage-gb",
        MeterSpec(label="Peak storage", meter_type=MeterType.MAX, unit="GB"),
    ),
]

DEMO_PLAN = PlanSpec(
    name="Demo usage plan",
    interval=PeriodInterval.MONTH,
    is_default=True,
    items=(
        ItemSpec(
            "api-calls",
            {
                "type": "graduated",
                "tiers": [
                    {"upTo": 10000, "unitPrice": "0.002"},
                    {"upTo": None, "unitPrice": "0.001"},
                ],
            },
            Decimal(1000),
        ),
        ItemSpec(
            "gb-seconds",
            {
                "type": "dimension",
                "dimensions": ["cloud_provider"],
                "prices": [
                    {"values": ["aws"], "model": {"type": "per_unit", "unitPrice": "0.0000166667"}}
                ],
                "default": {"type": "per_unit", "unitPrice": "0.0000125"},
            },
        ),
    ),
    fees=(Fee("platform fee", Decimal(10), recurring=True, prorated=True),),
)

DEMO_CUSTOMERS = [
    ("acme", "Acme Corp", "billing@acme.example"),
    ("globex", "Globex", "ap@globex.example"),
    ("initech", "Initech", "finance@initech.example"),
]


@dataclass(frozen=True)
class DemoAccount:
    account: Account
    admin_key: str


async def is_empty(session: AsyncSession) -> bool:
    return (await session.scalar(select(func.count()).select_from(Account))) == 0


async def seed(session: AsyncSession, *, now: datetime) -> DemoAccount:
    account = await accounts.create_account(session, name="Demo")
    issued = await accounts.issue_api_key(
        session, account_id=account.id, name="meterflow dev", scope=ApiKeyScope.ADMIN
    )
    for name, spec in DEMO_METERS:
        await meters.create_meter(session, account_id=account.id, meter_api_name=name, spec=spec)
        await meters.activate_meter(session, account_id=account.id, meter_api_name=name, now=now)
    # A default plan (customers created below join it), so invoices and wallets move too.
    plan = await plans.create_plan(session, account_id=account.id, spec=DEMO_PLAN)
    await plans.activate_plan(session, account_id=account.id, plan_id=plan.plan.id, now=now)
    for customer_id, name, email in DEMO_CUSTOMERS:
        await customers.create_customer(
            session,
            account_id=account.id,
            customer_id=customer_id,
            name=name,
            email=email,
            now=now,
        )
    await wallets.grant(
        session,
        account_id=account.id,
        customer_id="acme",
        amount=Decimal(25),
        currency="USD",
        priority=1,
        expires_at=None,
        reason="demo credits",
        purchased=True,
        now=now,
    )
    return DemoAccount(account=account, admin_key=issued.secret)


def demo_events(now_ms: int, rng: random.Random, count: int = 5) -> list[dict[str, object]]:
    """A few plausible events for the demo meters, as a producer would send them."""
    records: list[dict[str, object]] = []
    for _ in range(count):
        customer = rng.choice(DEMO_CUSTOMERS)[0]
        kind = rng.random()
        if kind < 0.6:
            record = {
                "meterApiName": "api-calls",
                "meterValue": rng.randint(1, 20),
                "dimensions": {
                    "region": rng.choice(["us", "eu"]),
                    "endpoint": rng.choice(["/search", "/orders", "/auth"]),
                },
            }
        elif kind < 0.85:
            record = {
                "meterApiName": "gb-seconds",
                "meterValue": round(rng.uniform(0.1, 40), 3),
                "dimensions": {
                    "function_id": f"fn-{rng.randint(1, 4)}",
                    "cloud_provider": rng.choice(["aws", "gcp"]),
                    "region": rng.choice(["us", "eu"]),
                },
            }
        else:
            record = {
                "meterApiName": "active-users",
                "meterValue": 1,
                "dimensions": {"user_id": f"user-{rng.randint(1, 60)}"},
            }
        record.update(
            {"customerId": customer, "meterTimeInMillis": now_ms, "uniqueId": uuid.uuid4().hex}
        )
        records.append(record)
    return records
