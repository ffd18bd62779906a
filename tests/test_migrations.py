"""Migrations and models agree, and upgrading twice is harmless."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import meterflow.models  # noqa: F401
from meterflow.migrations import include_object, upgrade
from tests.services import TestServices


async def test_migrations_match_models(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        diff = await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(
                    sync, opts={"compare_type": True, "include_object": include_object}
                ),
                SQLModel.metadata,
            )
        )
    assert diff == []


def test_upgrade_is_idempotent(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)


def test_0011_hashes_the_ids_of_outstanding_session_tokens(test_services: TestServices) -> None:
    """Tokens issued before the upgrade keep working: their row now holds the id's SHA-256."""
    import asyncio
    import hashlib
    import uuid
    from datetime import UTC, datetime, timedelta

    from alembic import command
    from sqlalchemy import text

    from meterflow.db import create_engine
    from meterflow.migrations import alembic_config
    from tests.conftest import _admin_execute

    name = f"meterflow_test_0011_{uuid.uuid4().hex[:8]}"
    admin = test_services.admin_database_url
    asyncio.run(_admin_execute(admin, f'CREATE DATABASE "{name}"'))
    url = test_services.database_url(name)
    account, token_id = uuid.uuid4(), "issued-before-the-upgrade-0123456789abcdef"

    async def sql(statement: str, **params: object) -> list[tuple[object, ...]]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    try:
        upgrade(url, "0010")
        asyncio.run(
            sql(
                "INSERT INTO accounts (id, name, auto_create_customers) VALUES (:a, 'old', true)",
                a=account,
            )
        )
        asyncio.run(
            sql(
                "INSERT INTO customer_sessions (account_id, id, token_id, customer_id, expires_at)"
                " VALUES (:a, :i, :t, 'c', :e)",
                a=account,
                i=uuid.uuid4(),
                t=token_id,
                e=datetime.now(UTC) + timedelta(hours=1),
            )
        )
        upgrade(url, "0011")
        rows = asyncio.run(sql("SELECT row_to_json(s)::text, token_hash FROM customer_sessions s"))
        assert rows == [(rows[0][0], hashlib.sha256(token_id.encode()).hexdigest())]
        assert token_id not in str(rows[0][0])
        # Down again: the ids cannot come back, so the short-lived tokens end.
        command.downgrade(alembic_config(url), "0010")
        assert asyncio.run(sql("SELECT count(*) FROM customer_sessions")) == [(0,)]
        upgrade(url)
    finally:
        asyncio.run(_admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_0013_collapses_consumption_into_one_line_per_invoice_and_grant(
    test_services: TestServices,
) -> None:
    """Lines written per re-rate (no grant, one per move) become one line per (invoice, grant)
    with the net amount; the wallet's lines add up to what they did before."""
    import asyncio
    import uuid
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from alembic import command
    from sqlalchemy import text

    from meterflow.db import create_engine
    from meterflow.migrations import alembic_config
    from tests.conftest import _admin_execute

    name = f"meterflow_test_0013_{uuid.uuid4().hex[:8]}"
    admin = test_services.admin_database_url
    asyncio.run(_admin_execute(admin, f'CREATE DATABASE "{name}"'))
    url = test_services.database_url(name)
    account, first, second = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    running, voided = uuid.uuid4(), uuid.uuid4()
    t0 = datetime(2026, 11, 2, tzinfo=UTC)

    async def sql(statement: str, **params: object) -> list[tuple[object, ...]]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return [tuple(row) for row in result] if result.returns_rows else []
        finally:
            await engine.dispose()

    def line(kind: str, amount: str, at: int, grant: object = None, invoice: object = None) -> None:
        asyncio.run(
            sql(
                "INSERT INTO wallet_ledger (account_id, customer_id, currency, kind, amount,"
                " balance_after, grant_id, invoice_id, created_at) VALUES"
                " (:a, 'c', 'USD', CAST(:k AS ledger_kind), :m, 0, :g, :i, :t)",
                a=account,
                k=kind,
                m=Decimal(amount),
                g=grant,
                i=invoice,
                t=t0 + timedelta(minutes=at),
            )
        )

    try:
        upgrade(url, "0012")
        asyncio.run(
            sql(
                "INSERT INTO accounts (id, name, auto_create_customers) VALUES (:a, 'old', true)",
                a=account,
            )
        )
        for grant, amount, remaining, priority in ((first, 5, 0, 1), (second, 10, "7.20", 2)):
            asyncio.run(
                sql(
                    "INSERT INTO credit_grants (account_id, id, customer_id, currency, amount,"
                    " remaining, ratio, money_currency, priority, purchased, created_at) VALUES"
                    " (:a, :g, 'c', 'USD', :m, :r, 1, 'USD', :p, true, :t)",
                    a=account,
                    g=grant,
                    m=Decimal(amount),
                    r=Decimal(remaining),
                    p=priority,
                    t=t0,
                )
            )
        for grant, amount in ((first, "5"), (second, "2.80")):
            asyncio.run(
                sql(
                    "INSERT INTO credit_allocations (account_id, invoice_id, grant_id, amount)"
                    " VALUES (:a, :i, :g, :m)",
                    a=account,
                    i=running,
                    g=grant,
                    m=Decimal(amount),
                )
            )
        line("GRANT", "5", 0, grant=first)
        line("GRANT", "10", 0, grant=second)
        for at, amount in ((1, "-3"), (2, "-4"), (3, "-0.80")):  # three re-rates: 7.80 drawn
            line("CONSUMPTION", amount, at, invoice=running)
        line("CONSUMPTION", "-1", 4, invoice=voided)  # drawn, then given back in full
        line("CONSUMPTION", "1", 5, invoice=voided)

        upgrade(url, "0013")
        rows = asyncio.run(
            sql(
                "SELECT kind::text, grant_id, invoice_id, amount, created_at, updated_at"
                " FROM wallet_ledger ORDER BY seq"
            )
        )
        at = [t0 + timedelta(minutes=m) for m in (0, 1, 3)]
        assert rows == [
            ("GRANT", first, None, Decimal(5), at[0], at[0]),
            ("GRANT", second, None, Decimal(10), at[0], at[0]),
            ("CONSUMPTION", first, running, Decimal(-5), at[1], at[2]),
            ("CONSUMPTION", second, running, Decimal("-2.80"), at[1], at[2]),
        ]
        # Down again: the stored balance is the running sum, as the statement shows it.
        command.downgrade(alembic_config(url), "0012")
        balances = asyncio.run(sql("SELECT balance_after FROM wallet_ledger ORDER BY seq"))
        assert balances == [(Decimal(5),), (Decimal(15),), (Decimal(10),), (Decimal("7.20"),)]
        upgrade(url)
    finally:
        asyncio.run(_admin_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
