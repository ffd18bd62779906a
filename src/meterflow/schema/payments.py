"""GraphQL types for collecting money: the account's Stripe connection, an invoice's payment,
prepaid top-ups and the automatic top-up rule."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry

from meterflow import models
from meterflow.pricing.money import written
from meterflow.schema.errors import ConflictProblem, NotFoundProblem, ValidationProblem
from meterflow.services.stripe_connections import webhook_path

strawberry.enum(models.CollectionMethod, name="StripeCollectionMethod")
strawberry.enum(models.PaymentStatus, name="PaymentStatus")
strawberry.enum(models.TopUpStatus, name="TopUpStatus")


@strawberry.input
class ConnectStripeInput:
    secret_key: str = strawberry.field(description="A Stripe secret (sk_…) or restricted key.")
    webhook_secret: str = strawberry.field(
        description="The signing secret (whsec_…) of the endpoint that posts to webhookPath."
    )
    collection_method: models.CollectionMethod = models.CollectionMethod.CHARGE_AUTOMATICALLY
    days_until_due: int = strawberry.field(
        default=30, description="For invoices sent to customers with no payment method on file."
    )


@strawberry.type(description="The account's Stripe connection (keys are never shown again).")
class StripeConnection:
    connected: bool
    key_last4: str | None
    webhook_path: str = strawberry.field(
        description="Where Stripe posts events: add this path, on meterflow's public URL, as a "
        "webhook endpoint in Stripe's dashboard."
    )
    collection_method: models.CollectionMethod | None
    days_until_due: int | None
    connected_at: datetime | None

    @classmethod
    def of(cls, account_id: object, row: models.StripeConnection | None) -> StripeConnection:
        return cls(
            connected=row is not None,
            key_last4=row.key_last4 if row else None,
            webhook_path=webhook_path(account_id),  # type: ignore[arg-type]
            collection_method=row.collection_method if row else None,
            days_until_due=row.days_until_due if row else None,
            connected_at=row.connected_at if row else None,
        )


ConnectStripeResult = Annotated[
    StripeConnection | ValidationProblem, strawberry.union("ConnectStripeResult")
]


@strawberry.type(description="How a finalized invoice is being collected.")
class InvoicePayment:
    provider: str
    external_id: str | None = strawberry.field(description="The Stripe invoice id.")
    status: models.PaymentStatus
    hosted_invoice_url: str | None = strawberry.field(
        description="Stripe's page where the customer sees and pays the invoice."
    )
    collection_method: models.CollectionMethod | None
    attempts: int
    last_error: str | None
    updated_at: datetime

    @classmethod
    def from_model(cls, row: models.InvoicePayment) -> InvoicePayment:
        return cls(
            provider=row.provider,
            external_id=row.external_id,
            status=row.status,
            hosted_invoice_url=row.hosted_invoice_url,
            collection_method=row.collection_method,
            attempts=row.attempts,
            last_error=row.last_error,
            updated_at=row.updated_at,
        )


@strawberry.input
class SetAutoTopUpInput:
    customer_id: str
    threshold: Decimal = strawberry.field(description="Top up when the balance falls below.")
    amount: Decimal = strawberry.field(description="How much to buy each time.")
    enabled: bool = True
    currency: str | None = strawberry.field(
        default=None, description="The wallet's currency; default: the customer's plan's."
    )


@strawberry.type(description="A wallet's automatic top-up rule.")
class AutoTopUp:
    customer_id: str
    currency: str
    threshold: Decimal
    amount: Decimal
    enabled: bool
    updated_at: datetime

    @classmethod
    def from_model(cls, row: models.AutoTopUp) -> AutoTopUp:
        return cls(
            customer_id=row.customer_id,
            currency=row.currency,
            threshold=written(row.threshold, row.currency),
            amount=written(row.amount, row.currency),
            enabled=row.enabled,
            updated_at=row.updated_at,
        )


@strawberry.type(description="A purchase of prepaid credits through a Stripe invoice.")
class TopUp:
    id: strawberry.ID
    customer_id: str
    status: models.TopUpStatus
    amount: Decimal
    currency: str
    automatic: bool
    external_id: str | None = strawberry.field(description="The Stripe invoice id.")
    hosted_invoice_url: str | None
    grant_id: strawberry.ID | None = strawberry.field(
        description="The credit grant made when it was paid."
    )
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None

    @classmethod
    def from_model(cls, row: models.TopUp) -> TopUp:
        return cls(
            id=strawberry.ID(str(row.id)),
            customer_id=row.customer_id,
            status=row.status,
            amount=written(row.amount, row.currency),
            currency=row.currency,
            automatic=row.automatic,
            external_id=row.external_id,
            hosted_invoice_url=row.hosted_invoice_url,
            grant_id=strawberry.ID(str(row.grant_id)) if row.grant_id else None,
            last_error=row.last_error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            paid_at=row.paid_at,
        )


SetAutoTopUpResult = Annotated[
    AutoTopUp | ValidationProblem | NotFoundProblem, strawberry.union("SetAutoTopUpResult")
]
CreateTopUpResult = Annotated[
    TopUp | ValidationProblem | NotFoundProblem | ConflictProblem,
    strawberry.union("CreateTopUpResult"),
]
