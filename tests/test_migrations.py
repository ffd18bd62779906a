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
