"""GraphQL types for the account's webhook endpoints and their deliveries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from meterflow import models
from meterflow.schema.errors import NotFoundProblem, ValidationProblem
from meterflow.schema.pagination import PageInfo
from meterflow.secretbox import SecretBox
from meterflow.services.pagination import Page, encode_cursor
from meterflow.services.webhook_endpoints import shown_url


@strawberry.input
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="A public https URL (checked at every delivery).")
    event_types: list[str] = strawberry.field(
        description='Event types, or ["*"] for all of them but the opt-in invoice.updated.'
    )
    description: str | None = None
    balance_low_threshold: Decimal | None = strawberry.field(
        default=None,
        description="wallet.balance_low also fires when a wallet falls below this (in the "
        "wallet's currency), besides its auto top-up threshold.",
    )


@strawberry.input
class UpdateWebhookEndpointInput:
    id: strawberry.ID
    url: str | None = None
    event_types: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None
    balance_low_threshold: Decimal | None = None


@strawberry.type(description="A receiver of the account's billing events.")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    balance_low_threshold: Decimal | None
    disabled_at: datetime | None = strawberry.field(
        description="When meterflow disabled it: its deliveries failed for 3 days."
    )
    secret_rotated_until: datetime | None = strawberry.field(
        description="Until then the previous secret signs too (a rotation is under way)."
    )
    created_at: datetime

    @classmethod
    def from_model(cls, row: models.WebhookEndpoint, box: SecretBox) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(str(row.id)),
            url=shown_url(row, box),
            event_types=list(row.event_types),
            description=row.description,
            enabled=row.enabled,
            balance_low_threshold=row.balance_low_threshold,
            disabled_at=row.disabled_at,
            secret_rotated_until=row.previous_secret_expires_at if row.previous_secret else None,
            created_at=row.created_at,
        )


@strawberry.type(description="An endpoint with its signing secret, shown this once.")
class CreatedWebhookEndpoint:
    endpoint: WebhookEndpoint
    secret: str = strawberry.field(description="whsec_…: verify deliveries with it.")


@strawberry.type
class WebhookAttempt:
    at: datetime
    status_code: int | None
    duration_ms: int
    error: str | None = strawberry.field(
        description="A class (timeout, http_500, redirect, blocked_address…), never a body."
    )


@strawberry.type
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    event_id: strawberry.ID
    event_type: str
    status: str = strawberry.field(description="PENDING, DELIVERED or FAILED.")
    attempts: list[WebhookAttempt]
    payload: JSON = strawberry.field(description="The body sent: {id, type, createdAt, data}.")
    created_at: datetime
    delivered_at: datetime | None

    @classmethod
    def from_rows(cls, row: models.WebhookDelivery, event: models.WebhookEvent) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(str(row.id)),
            endpoint_id=strawberry.ID(str(row.endpoint_id)),
            event_id=strawberry.ID(str(row.event_id)),
            event_type=event.type,
            status=row.status,
            attempts=[
                WebhookAttempt(
                    at=datetime.fromisoformat(a["at"]),
                    status_code=a.get("statusCode"),
                    duration_ms=int(a.get("durationMs") or 0),
                    error=a.get("error"),
                )
                for a in row.attempts
            ],
            payload=JSON(
                {
                    "id": str(event.id),
                    "type": event.type,
                    "createdAt": event.created_at.isoformat(),
                    "data": event.data,
                }
            ),
            created_at=row.created_at,
            delivered_at=row.delivered_at,
        )


@strawberry.type
class WebhookDeliveryEdge:
    cursor: str
    node: WebhookDelivery


@strawberry.type
class WebhookDeliveryConnection:
    edges: list[WebhookDeliveryEdge]
    page_info: PageInfo

    @classmethod
    def from_page(
        cls, page: Page[tuple[models.WebhookDelivery, models.WebhookEvent]]
    ) -> WebhookDeliveryConnection:
        edges = [
            WebhookDeliveryEdge(
                cursor=encode_cursor(row.created_at, row.id),
                node=WebhookDelivery.from_rows(row, event),
            )
            for row, event in page.items
        ]
        return cls(edges=edges, page_info=PageInfo.of(edges, page.has_next_page))


CreateWebhookEndpointResult = Annotated[
    CreatedWebhookEndpoint | ValidationProblem, strawberry.union("CreateWebhookEndpointResult")
]
WebhookEndpointResult = Annotated[
    WebhookEndpoint | ValidationProblem | NotFoundProblem, strawberry.union("WebhookEndpointResult")
]
RotateWebhookEndpointSecretResult = Annotated[
    CreatedWebhookEndpoint | NotFoundProblem,
    strawberry.union("RotateWebhookEndpointSecretResult"),
]
ReplayWebhookDeliveryResult = Annotated[
    WebhookDelivery | NotFoundProblem, strawberry.union("ReplayWebhookDeliveryResult")
]
