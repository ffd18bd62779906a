"""POST /webhooks/stripe/{accountId}: Stripe's events for one account, verified with that
account's webhook signing secret (Stripe-Signature, Stripe's 300 s tolerance).

A bad or missing signature is a 400 and changes nothing. A verified event is handled once by
its id (a replay answers 200 and changes nothing); types meterflow does not use answer 200.
A database outage answers 503, so Stripe retries later.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from redis.asyncio import Redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterflow.db import TIMEOUT_MESSAGE, SessionFactory, is_timeout, is_transient, unit_of_work
from meterflow.errors import ValidationError
from meterflow.jobs import JobQueue
from meterflow.payments.gateway import verify_event
from meterflow.pubsub import customer_channels, publish
from meterflow.secretbox import SecretBox, UnreadableSecretError
from meterflow.services import outbox, stripe_connections, stripe_events, webhook_events

log = logging.getLogger("meterflow.http.stripe_webhook")


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message} if status >= 400 else {"received": message}, status)


@dataclass(frozen=True)
class StripeWebhook:
    session_factory: SessionFactory
    box: SecretBox
    redis: Redis
    jobs: JobQueue

    async def endpoint(self, request: Request) -> Response:
        try:
            account_id = uuid.UUID(str(request.path_params["account_id"]))
        except ValueError:
            return _answer(404, "no such webhook endpoint")
        payload = await request.body()
        try:
            async with self.session_factory() as session:
                creds = await stripe_connections.credentials(
                    session, account_id=account_id, box=self.box
                )
        except UnreadableSecretError:
            log.error("account %s: its Stripe webhook secret cannot be opened", account_id)
            return _answer(503, "this endpoint's signing secret cannot be read; retry later")
        except Exception as exc:
            if is_transient(exc):
                return _answer(503, "the database is unavailable; retry shortly")
            raise
        if creds is None:
            return _answer(404, "no Stripe connection for this account")
        try:
            event = verify_event(
                payload, request.headers.get("stripe-signature"), creds.webhook_secret
            )
        except (ValueError, RecursionError) as exc:
            return _answer(400, f"signature verification failed: {exc}"[:300])
        try:
            async with unit_of_work(self.session_factory) as session:
                handled = await stripe_events.handle(
                    session, account_id=account_id, event=event, now=datetime.now(UTC)
                )
        except ValidationError as exc:
            return _answer(400, exc.message)
        except Exception as exc:
            if is_timeout(exc):
                return _answer(504, TIMEOUT_MESSAGE)
            if is_transient(exc):
                return _answer(503, "the database is unavailable; retry shortly")
            raise
        for account in webhook_events.written(session):  # invoice.paid and the like, now
            await self.jobs.run_outbox(account, outbox.DELIVER_WEBHOOK)
        channels = [
            c
            for customer in sorted(handled.customers)
            for c in customer_channels(account_id, customer)
        ]
        if channels:
            try:
                await publish(self.redis, *channels)
            except Exception:  # the change is committed; subscribers re-read on reconnect
                log.warning("account %s: could not publish a Stripe event's changes", account_id)
        return _answer(200, "replay" if handled.replay else "ok")
