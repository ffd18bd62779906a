"""The account's webhook endpoints and their deliveries (admin keys only)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.errors import NotFoundError
from meterflow.resolvers.base import Info, mutate, require_admin, secret_box
from meterflow.schema.webhooks import (
    CreatedWebhookEndpoint,
    CreateWebhookEndpointInput,
    CreateWebhookEndpointResult,
    ReplayWebhookDeliveryResult,
    RotateWebhookEndpointSecretResult,
    UpdateWebhookEndpointInput,
    WebhookDelivery,
    WebhookDeliveryConnection,
    WebhookEndpoint,
    WebhookEndpointResult,
)
from meterflow.services import outbox, webhook_endpoints
from meterflow.services.pagination import Page, page_size


def _id(value: strawberry.ID | str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFoundError(f"no {what} {value} in this account") from exc


def _created(info: Info) -> Any:
    return lambda made: CreatedWebhookEndpoint(
        endpoint=WebhookEndpoint.from_model(made.endpoint, secret_box(info)), secret=made.secret
    )


@strawberry.type
class WebhookQueries:
    @strawberry.field(description="The account's webhook endpoints, oldest first.")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            rows = await webhook_endpoints.list_endpoints(session, account_id=principal.account_id)
        return [WebhookEndpoint.from_model(row, secret_box(info)) for row in rows]

    @strawberry.field(description="Deliveries, newest first, with each attempt.")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: strawberry.ID | None = None,
        status: str | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> WebhookDeliveryConnection:
        principal = require_admin(info)
        limit = page_size(first, maximum=info.context.max_page_size)
        try:
            endpoint = _id(endpoint_id, "webhook endpoint") if endpoint_id is not None else None
        except NotFoundError:
            return WebhookDeliveryConnection.from_page(_empty())
        async with info.context.session_factory() as session:
            page = await webhook_endpoints.deliveries(
                session,
                account_id=principal.account_id,
                endpoint_id=endpoint,
                status=status,
                limit=limit,
                after=after,
            )
        return WebhookDeliveryConnection.from_page(page)


def _empty() -> Any:
    return Page([], False)


@strawberry.type
class WebhookMutations:
    @strawberry.mutation(
        description="Subscribe a URL to billing events; the signing secret is shown once."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointResult:
        return await mutate(
            info,
            lambda session, principal: webhook_endpoints.create(
                session,
                account_id=principal.account_id,
                url=input.url,
                types=input.event_types,
                description=input.description,
                balance_low_threshold=input.balance_low_threshold,
                box=secret_box(info),
                allow_private=info.context.allow_private_webhook_targets,
                now=datetime.now(UTC),
            ),
            _created(info),
        )

    @strawberry.mutation(description="Change an endpoint; enabling it again clears its failures.")
    async def update_webhook_endpoint(
        self, info: Info, input: UpdateWebhookEndpointInput
    ) -> WebhookEndpointResult:
        changes: dict[str, Any] = {
            "url": input.url,
            "event_types": input.event_types,
            "description": input.description,
            "enabled": input.enabled,
        }
        if input.balance_low_threshold is not None:
            changes["balance_low_threshold"] = input.balance_low_threshold
        return await mutate(
            info,
            lambda session, principal: webhook_endpoints.update(
                session,
                account_id=principal.account_id,
                endpoint_id=_id(input.id, "webhook endpoint"),
                changes=changes,
                box=secret_box(info),
                allow_private=info.context.allow_private_webhook_targets,
                now=datetime.now(UTC),
            ),
            lambda row: WebhookEndpoint.from_model(row, secret_box(info)),
        )

    @strawberry.mutation(
        description="A new signing secret, shown once; the old one keeps signing for 24 h "
        "(both signatures are sent meanwhile)."
    )
    async def rotate_webhook_endpoint_secret(
        self, info: Info, id: strawberry.ID
    ) -> RotateWebhookEndpointSecretResult:
        return await mutate(
            info,
            lambda session, principal: webhook_endpoints.rotate_secret(
                session,
                account_id=principal.account_id,
                endpoint_id=_id(id, "webhook endpoint"),
                box=secret_box(info),
                now=datetime.now(UTC),
            ),
            _created(info),
        )

    @strawberry.mutation(description="Delete an endpoint; its pending deliveries are dropped.")
    async def delete_webhook_endpoint(self, info: Info, id: strawberry.ID) -> WebhookEndpointResult:
        return await mutate(
            info,
            lambda session, principal: webhook_endpoints.delete(
                session, account_id=principal.account_id, endpoint_id=_id(id, "webhook endpoint")
            ),
            lambda row: WebhookEndpoint.from_model(row, secret_box(info)),
        )

    @strawberry.mutation(description="Send a delivery's event again, with the same event id.")
    async def replay_webhook_delivery(
        self, info: Info, id: strawberry.ID
    ) -> ReplayWebhookDeliveryResult:
        async def replay(session: AsyncSession, principal: Any) -> WebhookDelivery:
            copy = await webhook_endpoints.replay(
                session,
                account_id=principal.account_id,
                delivery_id=_id(id, "webhook delivery"),
                now=datetime.now(UTC),
            )
            page = await webhook_endpoints.deliveries(
                session,
                account_id=principal.account_id,
                endpoint_id=copy.endpoint_id,
                delivery_id=copy.id,
                status=None,
                limit=1,
                after=None,
            )
            row, event = page.items[0]
            return WebhookDelivery.from_rows(row, event)

        result = await mutate(info, replay, lambda delivery: delivery)
        if isinstance(result, WebhookDelivery) and info.context.jobs is not None:
            await info.context.jobs.run_outbox(
                require_admin(info).account_id, outbox.DELIVER_WEBHOOK
            )
        return result
