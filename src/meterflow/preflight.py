"""What `serve` and `worker` check before they start, so that a first run that cannot work
says which setting to change instead of failing on its first request."""

from __future__ import annotations

import asyncio

from alembic.script import ScriptDirectory
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url

from meterflow.db import create_engine
from meterflow.migrations import alembic_config


class NotReady(Exception):
    """Why meterflow cannot start, with the setting or command that fixes it."""


class Unreachable(Exception):
    """A service that does not answer now: meterflow starts anyway (it answers 503 and its
    worker waits until the service is back), but says which setting points at it."""


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(an unreadable URL)"


async def _database(database_url: str) -> None:
    where = _shown(database_url)
    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
            current = (
                await conn.scalar(text("SELECT version_num FROM alembic_version"))
                if exists
                else None
            )
    except Exception as exc:
        raise Unreachable(
            f"cannot reach PostgreSQL at {where}: {type(exc).__name__}: {exc}".split("\n")[0]
            + " — check METERFLOW_DATABASE_URL, or start the database"
        ) from exc
    finally:
        await engine.dispose()
    if current != head:
        state = "has no meterflow schema" if current is None else f"is at revision {current}"
        raise NotReady(f"the database at {where} {state}, not {head}: run `meterflow migrate`")


async def _redis(redis_url: str) -> None:
    where = _shown(redis_url)
    client = Redis.from_url(redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
    except Exception as exc:
        raise Unreachable(
            f"cannot reach Redis at {where}: {type(exc).__name__}: {exc}"
            " — check METERFLOW_REDIS_URL, or start Redis"
        ) from exc
    finally:
        await client.aclose()


def check(database_url: str, redis_url: str) -> list[str]:
    """Raises NotReady naming what to fix; returns what does not answer now (see Unreachable)."""

    async def both() -> list[str]:
        down = []
        for probe, url in ((_database, database_url), (_redis, redis_url)):
            try:
                await probe(url)
            except Unreachable as exc:
                down.append(str(exc))
        return down

    return asyncio.run(both())
