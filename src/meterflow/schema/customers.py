from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from meterflow import models
from meterflow.schema.billing import Invoice, PlanAssignment, PricingPlan, Wallet
from meterflow.schema.enums import MeterType
from meterflow.schema.errors import ConflictProblem, NotFoundProblem, ValidationProblem
from meterflow.schema.loaders import Loaders, settled, then
from meterflow.schema.pagination import PageInfo
from meterflow.schema.usage import MeterUsage
from meterflow.services.customer_views import MeterTotal
from meterflow.services.pagination import Page, encode_cursor
from meterflow.services.plans import LoadedPlan


@strawberry.type
class Customer:
    id: strawberry.ID
    customer_id: str
    name: str
    email: str | None
    traits: JSON
    enabled: bool
    stripe_customer_id: str | None = strawberry.field(
        description="The customer's Stripe Customer: created when its first invoice or top-up "
        "is sent, or set with updateCustomer."
    )
    created_at: datetime
    updated_at: datetime
    account_id: strawberry.Private[uuid.UUID]

    # The nested fields below are plain functions, not coroutines: on a page the customers
    # resolver primed (Loaders.prime_customers) they answer at once, which spares graphql-core
    # a task per field; elsewhere they return the loader's awaitable (loaders.settled).

    @strawberry.field(description="Usage so far in the current period, per meter.")
    def current_usage(self, info: strawberry.Info) -> list[MeterUsage]:
        return then(settled(info.context.loaders.current_usage, self.customer_id), _usage)  # type: ignore[return-value]

    @strawberry.field(description="The running invoice of the current period, or null.")
    def current_invoice(self, info: strawberry.Info) -> Invoice | None:
        return then(  # type: ignore[return-value]
            settled(info.context.loaders.current_invoice, self.customer_id), _invoice
        )

    @strawberry.field(description="The plan the customer is on now, or null.")
    def plan(self, info: strawberry.Info) -> PricingPlan | None:
        loaders = info.context.loaders
        return then(  # type: ignore[return-value]
            settled(loaders.current_plan, self.customer_id),
            lambda loaded: _plan(loaded, loaders.plan_views),
        )

    @strawberry.field(description="Every plan assignment, oldest first, with start and end.")
    def plan_assignments(self, info: strawberry.Info) -> list[PlanAssignment]:
        return then(  # type: ignore[return-value]
            settled(info.context.loaders.assignments, self.customer_id), _assignments
        )

    @strawberry.field(
        description="Prepaid credits in `currency` (default: the current plan's, else USD)."
    )
    def wallet(self, info: strawberry.Info, currency: str | None = None) -> Wallet:
        loaders = info.context.loaders
        if currency:
            return self._wallet(currency.upper(), loaders)  # type: ignore[return-value]
        # The plan `plan` reads too: one batch for both fields.
        return then(  # type: ignore[return-value]
            settled(loaders.current_plan, self.customer_id),
            lambda loaded: self._wallet(loaded.plan.currency if loaded else "USD", loaders),
        )

    def _wallet(self, currency: str, loaders: Loaders) -> Wallet | Awaitable[Wallet]:
        return then(
            settled(loaders.balance, (self.customer_id, currency)),
            lambda balance: Wallet(
                customer_id=self.customer_id,
                currency=currency,
                balance=balance,
                account_id=self.account_id,
            ),
        )

    @classmethod
    def from_model(cls, row: models.Customer) -> Customer:
        return cls(
            id=strawberry.ID(str(row.id)),
            customer_id=row.customer_id,
            name=row.name,
            email=row.email,
            traits=JSON(row.traits),
            enabled=row.enabled,
            stripe_customer_id=row.stripe_customer_id,
            created_at=row.created_at,
            updated_at=row.updated_at,
            account_id=row.account_id,
        )


def _usage(totals: list[MeterTotal]) -> list[MeterUsage]:
    return [
        MeterUsage(
            meter_api_name=t.meter_api_name,
            meter_type=MeterType(t.meter_type),
            unit=t.unit,
            value=t.value,
            period_start=t.period_start,
            period_end=t.period_end,
        )
        for t in totals
    ]


def _invoice(row: models.Invoice | None) -> Invoice | None:
    return Invoice.from_model(row) if row is not None else None


def _plan(loaded: LoadedPlan | None, views: dict[uuid.UUID, Any]) -> PricingPlan | None:
    """The plan's GraphQL view, made once a request: a page's customers mostly share a few."""
    if loaded is None:
        return None
    view = views.get(loaded.plan.id)
    if view is None:
        view = views[loaded.plan.id] = PricingPlan.from_loaded(loaded)
    return view


def _assignments(history: list[models.PlanAssignment]) -> list[PlanAssignment]:
    return [
        PlanAssignment(
            customer_id=a.customer_id,
            plan_id=strawberry.ID(str(a.plan_id)),
            start_time=a.start_time,
            end_time=a.end_time,
        )
        for a in history
    ]


@strawberry.type
class CustomerEdge:
    cursor: str
    node: Customer


@strawberry.type
class CustomerConnection:
    edges: list[CustomerEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[models.Customer]) -> CustomerConnection:
        edges = [
            CustomerEdge(
                cursor=encode_cursor(row.created_at, row.id), node=Customer.from_model(row)
            )
            for row in page.items
        ]
        return cls(
            edges=edges,
            page_info=PageInfo.of(edges, page.has_next_page),
        )


@strawberry.input
class CreateCustomerInput:
    customer_id: str
    name: str | None = None
    email: str | None = None
    traits: JSON | None = strawberry.field(
        default=None, description='Object of string values, e.g. {"stripeId": "cus_123"}'
    )
    enabled: bool = True


@strawberry.input(description="Fields left out are unchanged; an empty email clears it.")
class UpdateCustomerInput:
    customer_id: str
    name: str | None = None
    email: str | None = None
    traits: JSON | None = None
    enabled: bool | None = None
    stripe_customer_id: str | None = strawberry.field(
        default=None,
        description="Link an existing Stripe Customer (cus_…); an empty string unlinks it.",
    )


CreateCustomerResult = Annotated[
    Customer | ValidationProblem | ConflictProblem, strawberry.union("CreateCustomerResult")
]
UpdateCustomerResult = Annotated[
    Customer | ValidationProblem | NotFoundProblem, strawberry.union("UpdateCustomerResult")
]
