"""Async engine and session factory (asyncpg). Services receive a session; they never commit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from meterflow.config import to_async_database_url

SessionFactory = async_sessionmaker[AsyncSession]


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        to_async_database_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        # Times are UTC everywhere: make the server agree whatever its own default is.
        connect_args={"server_settings": {"timezone": "UTC", "application_name": "meterflow"}},
    )


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    # expire_on_commit=False: objects stay readable after the unit of work commits, which is
    # when resolvers map them to GraphQL types (no lazy loads in async code).
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(factory: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on any exception."""
    async with factory() as session, session.begin():
        yield session


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the database is unreachable, restarting, or aborted us.

    Producers get a 503 for these (and retry, deduplicated by identity); anything else is a bug.
    """
    import asyncpg
    from sqlalchemy import exc as sa_exc

    transient: tuple[type[BaseException], ...] = (
        sa_exc.OperationalError,
        sa_exc.InterfaceError,
        sa_exc.TimeoutError,
        asyncpg.PostgresConnectionError,
        asyncpg.InterfaceError,
        asyncpg.CannotConnectNowError,
        asyncpg.TooManyConnectionsError,
        asyncpg.DeadlockDetectedError,
        asyncpg.SerializationError,
        asyncpg.AdminShutdownError,
        OSError,
        ConnectionError,
    )
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, transient):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False
