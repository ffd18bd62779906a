"""Redis pub/sub: publish after commit; subscribe as async iterators over ONE connection per
API process, however many subscribers there are.

Messages are notifications ("this changed"), not state. A subscriber keeps a dirty flag and
re-reads the current state when it is set, so bursts coalesce, a slow subscriber costs one flag
(never a growing queue), and every subscription ends on the latest state. After Redis comes
back from an outage every subscriber is marked dirty: nothing stays stale.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("meterflow.pubsub")

RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


def channel(account_id: uuid.UUID, topic: str, key: str) -> str:
    return f"mf:{account_id}:{topic}:{key}"


def event_channels(account_id: uuid.UUID, meters: set[str]) -> list[str]:
    """Where new events of these meters are announced (and to all-meter subscribers)."""
    return [channel(account_id, "events", name) for name in sorted(meters)] + [
        channel(account_id, "events", "*")
    ]


def customer_channels(account_id: uuid.UUID, customer_id: str) -> list[str]:
    """What changes when a customer's usage (and so invoice and credits) changes."""
    return [channel(account_id, topic, customer_id) for topic in ("usage", "invoice", "wallet")]


def credentials_channel(account_id: uuid.UUID) -> str:
    """Where an account announces that one of its keys or session tokens was revoked: API
    processes then re-check the credentials of the sockets they hold."""
    return channel(account_id, "credentials", "revoked")


async def publish(redis: Redis, *channels: str) -> None:
    """Tell subscribers that something changed. Call only after the change has committed.
    Best effort: a lost notification delays an update, it never corrupts one (subscribers
    re-read the truth, and re-read everything after a reconnect)."""
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for name in channels:
                pipe.publish(name, b"1")
            await pipe.execute()
    except (RedisError, OSError) as exc:
        log.warning("publish skipped (%s)", type(exc).__name__)


@dataclass(eq=False)
class Subscriber:
    channels: tuple[str, ...]
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    # Set once Redis delivers this subscriber's channels: read the current state only after
    # that, or a change landing in between would be lost.
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def changes(self) -> AsyncIterator[None]:
        """Yields once per (coalesced) change."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            yield None


class Broker:
    """One Redis connection per process, subscribed to the union of what local clients want."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._subscribers: dict[str, set[Subscriber]] = defaultdict(set)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False

    @property
    def subscriber_count(self) -> int:
        return len({s for group in self._subscribers.values() for s in group})

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pubsub-broker")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscriber]:
        self.start()
        subscriber = Subscriber(tuple(channels))
        new = [c for c in channels if not self._subscribers.get(c)]
        for name in channels:
            self._subscribers[name].add(subscriber)
        if new or not self.connected:
            self._wake.set()  # the reader subscribes to the new channels, then marks it ready
        else:
            subscriber.ready.set()
        try:
            yield subscriber
        finally:
            for name in channels:
                group = self._subscribers.get(name)
                if group is not None:
                    group.discard(subscriber)
                    if not group:
                        del self._subscribers[name]
            self._wake.set()

    def _mark_all_dirty(self) -> None:
        for group in self._subscribers.values():
            for subscriber in group:
                subscriber.dirty.set()

    async def _run(self) -> None:
        attempt = 0
        while True:
            redis = Redis.from_url(
                self.redis_url, socket_connect_timeout=2, health_check_interval=10
            )
            pubsub = redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.ping()
                wanted: set[str] = set()
                if attempt:  # we were down: whatever happened meanwhile, re-read it
                    self._mark_all_dirty()
                self.connected = True
                attempt = 0
                while True:
                    current = set(self._subscribers)
                    if current - wanted:
                        await pubsub.subscribe(*(current - wanted))
                    if wanted - current:
                        await pubsub.unsubscribe(*(wanted - current))
                    wanted = current
                    self._wake.clear()
                    for name in wanted:
                        for subscriber in self._subscribers.get(name, ()):
                            subscriber.ready.set()
                    if not wanted:
                        await self._wake.wait()
                        continue
                    message = await pubsub.get_message(timeout=0.1)
                    if message is not None and message.get("type") == "message":
                        name = message["channel"].decode()
                        for subscriber in self._subscribers.get(name, ()):
                            subscriber.dirty.set()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                self.connected = False
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                log.warning(
                    "pubsub lost Redis (%s); reconnecting in %.2fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
            finally:
                try:
                    await pubsub.aclose()
                    await redis.aclose()
                except (RedisError, OSError):
                    pass
