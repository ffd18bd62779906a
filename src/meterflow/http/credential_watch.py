"""Keeps an API process's open WebSockets honest about the credential they authenticated with.

A socket authenticates once, at connection_init, and may stay open for days. Meanwhile its API
key can be revoked, its customer session token revoked or expire. Each socket therefore:
- re-checks its credential before every operation and before every message that carries data
  (`check`, batched: the checks asked for at the same moment share one query);
- is closed (4403 + the reason) when its credential stops being valid, by
  - a revocation notice on Redis (`credentials_channel`, published after the revocation
    commits, by whichever API process revoked it): this process then re-checks at once;
  - a sweep every couple of seconds, one query for every credential this process holds: the
    backstop when a notice is lost (Redis restarting);
  - a timer at the moment a session token expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import Counter
from collections.abc import Collection, Coroutine
from datetime import UTC, datetime
from typing import Any, Protocol

from meterflow.db import SessionFactory, is_transient
from meterflow.http.auth import Principal
from meterflow.pubsub import Broker, credentials_channel
from meterflow.services import credentials
from meterflow.services.credentials import Credential, credential_of
from meterflow.services.sessions import CustomerPrincipal

log = logging.getLogger("meterflow.credentials")

SWEEP_SECONDS = 2.0
EXPIRED = "session token expired"


class Holder(Protocol):
    """An open connection that authenticated with a credential."""

    async def revoke(self, reason: str) -> None:
        """Close the connection, telling the client why; send nothing more."""


class CredentialWatch:
    def __init__(
        self,
        session_factory: SessionFactory,
        broker: Broker | None,
        *,
        sweep_seconds: float = SWEEP_SECONDS,
    ) -> None:
        self.session_factory = session_factory
        self.broker = broker
        self.sweep_seconds = sweep_seconds
        self._holders: dict[Credential, set[Holder]] = {}
        self._accounts: Counter[uuid.UUID] = Counter()
        self._listeners: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._timers: dict[Holder, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._batch: tuple[set[Credential], asyncio.Future[dict[Credential, str]]] | None = None
        self._wake = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    def register(self, holder: Holder, principal: Principal) -> None:
        credential = credential_of(principal)
        self._holders.setdefault(credential, set()).add(holder)
        self._accounts[credential.account_id] += 1
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="credential-sweep")
        if self.broker is not None and credential.account_id not in self._listeners:
            self._listeners[credential.account_id] = asyncio.create_task(
                self._listen(credential.account_id), name="credential-notices"
            )
        if isinstance(principal, CustomerPrincipal):
            delay = (principal.expires_at - datetime.now(UTC)).total_seconds()
            self._timers[holder] = asyncio.get_running_loop().call_later(
                max(0.0, delay), lambda: self._spawn(holder.revoke(EXPIRED))
            )

    def unregister(self, holder: Holder, principal: Principal) -> None:
        credential = credential_of(principal)
        group = self._holders.get(credential)
        if group is None or holder not in group:
            return
        group.discard(holder)
        if not group:
            del self._holders[credential]
        if timer := self._timers.pop(holder, None):
            timer.cancel()
        self._accounts[credential.account_id] -= 1
        if self._accounts[credential.account_id] <= 0:
            del self._accounts[credential.account_id]
            if listener := self._listeners.pop(credential.account_id, None):
                listener.cancel()

    async def check(self, principal: Principal) -> str | None:
        """Why this principal's credential no longer holds, or None while it does. Reads the
        database now: a revocation committed before this call is always seen."""
        credential = credential_of(principal)
        if self._batch is None:
            batch: tuple[set[Credential], asyncio.Future[dict[Credential, str]]] = (
                set(),
                asyncio.get_running_loop().create_future(),
            )
            self._batch = batch
            self._spawn(self._answer(batch))
        wanted, answer = self._batch
        wanted.add(credential)
        reasons = await asyncio.shield(answer)
        return reasons.get(credential)

    async def _answer(
        self, batch: tuple[set[Credential], asyncio.Future[dict[Credential, str]]]
    ) -> None:
        # Runs one loop turn after the first check: the checks asked for meanwhile join it,
        # and every one of them was asked for before the query starts.
        if self._batch is batch:
            self._batch = None
        wanted, answer = batch
        answer.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved
        try:
            reasons = await self._invalid(wanted)
        except asyncio.CancelledError:
            answer.cancel()
            raise
        except Exception as exc:
            answer.set_exception(exc)
        else:
            answer.set_result(reasons)

    async def sweep(self) -> None:
        """Close every socket whose credential no longer holds: one query for all of them."""
        if not self._holders:
            return
        reasons = await self._invalid(list(self._holders))
        for credential, reason in reasons.items():
            for holder in list(self._holders.get(credential, ())):
                self._spawn(holder.revoke(reason))

    async def _invalid(self, wanted: Collection[Credential]) -> dict[Credential, str]:
        async with self.session_factory() as session:
            return await credentials.invalid_credentials(
                session, credentials=wanted, now=datetime.now(UTC)
            )

    async def _sweep_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.sweep_seconds)
            self._wake.clear()
            try:
                await self.sweep()
            except Exception as exc:
                if not is_transient(exc):
                    log.exception("credential sweep failed")
                else:  # the database is away: the next round retries
                    log.warning("credential sweep skipped (%s)", type(exc).__name__)

    async def _listen(self, account_id: uuid.UUID) -> None:
        assert self.broker is not None
        async with self.broker.subscribe(credentials_channel(account_id)) as notices:
            async for _ in notices.changes():
                self._wake.set()

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        tasks = [*self._listeners.values(), *self._tasks]
        if self._sweeper is not None:
            tasks.append(self._sweeper)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._listeners.clear()
        self._sweeper = None
