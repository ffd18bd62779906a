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

TIMEOUT_MESSAGE = (
    "the database did not answer within the statement timeout; narrow the query "
    "(a shorter range, fewer groups) or retry later"
)


def create_engine(
    database_url: str, *, pool_size: int = 10, statement_timeout_ms: int | None = None
) -> AsyncEngine:
    """`statement_timeout_ms`: PostgreSQL cancels any statement of these connections that runs
    (or waits on a lock) longer; None or 0 leaves the server's own setting."""
    # Times are UTC everywhere: make the server agree whatever its own default is.
    server_settings = {"timezone": "UTC", "application_name": "meterflow"}
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(statement_timeout_ms)
    return create_async_engine(
        to_async_database_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": server_settings},
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


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "orig", None) or current.__cause__
    return seen


def is_timeout(exc: BaseException) -> bool:
    """PostgreSQL cancelled the statement (57014): it ran past `statement_timeout`."""
    import asyncpg

    return any(
        isinstance(cause, asyncpg.QueryCanceledError)
        or getattr(cause, "sqlstate", None) == asyncpg.QueryCanceledError.sqlstate
        for cause in _causes(exc)
    )


def bad_value(exc: BaseException) -> str | None:
    """PostgreSQL's own words when it refused a value (SQLSTATE class 22, "data exception":
    a NUL in text, a number or date out of range), which only a client's input can cause."""
    for cause in _causes(exc):
        sqlstate = getattr(cause, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith("22"):
            # asyncpg's message is the server's first line: no statement, no parameters.
            message = getattr(cause, "message", None) or str(cause.args[0] if cause.args else "")
            return str(message).splitlines()[0] if message else "invalid value"
    return None


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
