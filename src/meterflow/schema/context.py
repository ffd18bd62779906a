"""The typed GraphQL context: who is calling, and how to open a unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from meterflow.db import SessionFactory, unit_of_work
from meterflow.jobs import JobQueue
from meterflow.pubsub import Broker, publish
from meterflow.schema.loaders import Loaders
from meterflow.secretbox import SecretBox
from meterflow.services import outbox, webhook_events
from meterflow.services.accounts import AccountPrincipal
from meterflow.services.sessions import CustomerPrincipal


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    # A factory, never one shared session: Strawberry resolves sibling fields concurrently.
    session_factory: SessionFactory
    max_page_size: int
    jobs: JobQueue | None = None
    principal: AccountPrincipal | CustomerPrincipal | None = None
    connection_params: dict[str, Any] | None = field(default=None)
    broker: Broker | None = None
    redis: Redis | None = None
    # The current secret key (signs new session tokens) and the box that seals and opens
    # stored credentials (webhook secrets and URLs).
    secret_key: str = ""
    # The development switch: alert rules may target plain http and private addresses.
    allow_private_webhook_targets: bool = False
    secret_box: SecretBox | None = None
    # Why connection_init was refused, for the WebSocket close frame.
    rejection: str | None = None
    _loaders: Loaders | None = field(default=None, repr=False)

    @property
    def loaders(self) -> Loaders:
        """This request's DataLoaders, made on first use, for the caller's account."""
        if self._loaders is None:
            if self.principal is None:
                raise RuntimeError("DataLoaders need an authenticated principal")
            self._loaders = Loaders(
                self.session_factory,
                self.principal.account_id,
                cache=not isinstance(self.request, WebSocket),
            )
        return self._loaders

    async def publish(self, *channels: str) -> None:
        """Notify subscribers; call after the unit of work has committed."""
        if self.redis is not None and channels:
            await publish(self.redis, *channels)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        async with unit_of_work(self.session_factory) as session:
            yield session
        # Committed: the webhook deliveries it wrote start now (the sweep is the safety net).
        if self.jobs is not None:
            for account_id in webhook_events.written(session):
                await self.jobs.run_outbox(account_id, outbox.DELIVER_WEBHOOK)
