"""Every row belongs to one account, and the schema says so where a distributed PostgreSQL
(Citus, distributing by account_id) needs it: each table has an account_id, every primary key
and unique constraint leads with it, and every foreign key carries it. Read from the catalog of
the database the real migrations built, partitions included."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Tables and constraints that are not per account, and why.
GLOBAL_TABLES = {
    "accounts": "the tenants themselves: distributed by their id, which is every account_id",
    "alembic_version": "the schema's revision",
}
GLOBAL_UNIQUES = {
    # Credentials are found by their hash before anyone knows the account: on Citus these two
    # tables would be reference tables (copied to every node), or the hash would carry the id.
    "uq_api_keys_key_hash": "an API key is looked up by its hash",
    "customer_sessions_token_hash_key": "a customer token is looked up by its hash",
}

KEYS = """
SELECT c.relname, i.relname,
       (SELECT array_agg(a.attname ORDER BY k.ord)
        FROM unnest(ix.indkey) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum)
FROM pg_index ix
JOIN pg_class c ON c.oid = ix.indrelid
JOIN pg_class i ON i.oid = ix.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND (ix.indisprimary OR ix.indisunique) AND c.relkind IN ('r', 'p')
"""


async def test_every_key_leads_with_the_account(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        keys = (await conn.execute(text(KEYS))).all()
    checked = 0
    for table, index, columns in keys:
        if table in GLOBAL_TABLES or index in GLOBAL_UNIQUES:
            continue
        assert columns[0] == "account_id", f"{table}.{index} is on {columns}"
        checked += 1
    assert checked >= 35  # the catalog was read: every table of the schema has keys


async def test_every_table_has_an_account_id_and_every_foreign_key_carries_it(
    engine: AsyncEngine,
) -> None:
    async with engine.connect() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT c.relname, bool_or(a.attname = 'account_id') FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
                    "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') GROUP BY c.relname"
                )
            )
        ).all()
        foreign = (
            await conn.execute(
                text(
                    "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
                    "WHERE contype = 'f' AND connamespace = 'public'::regnamespace"
                )
            )
        ).all()
    assert len(tables) >= 30
    for table, has_account in tables:
        assert has_account or table in GLOBAL_TABLES, f"{table} has no account_id"
    assert foreign
    for table, definition in foreign:
        assert definition.startswith("FOREIGN KEY (account_id"), f"{table}: {definition}"
