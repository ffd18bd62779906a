from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from meterflow import models
from meterflow.schema.billing import Invoice, PlanAssignment, PricingPlan, Wallet
from meterflow.schema.enums import MeterType
from meterflow.schema.errors import ConflictProblem, NotFoundProblem, ValidationProblem
from meterflow.schema.pagination import PageInfo
from meterflow.schema.usage import MeterUsage
from meterflow.services.pagination import Page, encode_cursor


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

    @strawberry.field(description="Usage so far in the current period, per meter.")
    async def current_usage(self, info: strawberry.Info) -> list[MeterUsage]:
        totals = await info.context.loaders.current_usage.load(self.customer_id)
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

    @strawberry.field(description="The running invoice of the current period, or null.")
    async def current_invoice(self, info: strawberry.Info) -> Invoice | None:
        row = await info.context.loaders.current_invoice.load(self.customer_id)
        return Invoice.from_model(row) if row is not None else None

    @strawberry.field(description="The plan the customer is on now, or null.")
    async def plan(self, info: strawberry.Info) -> PricingPlan | None:
        loaded = await info.context.loaders.current_plan.load(self.customer_id)
        return PricingPlan.from_loaded(loaded) if loaded is not None else None

    @strawberry.field(description="Every plan assignment, oldest first, with start and end.")
    async def plan_assignments(self, info: strawberry.Info) -> list[PlanAssignment]:
        history = await info.context.loaders.assignments.load(self.customer_id)
        return [
            PlanAssignment(
                customer_id=a.customer_id,
                plan_id=strawberry.ID(str(a.plan_id)),
                start_time=a.start_time,
                end_time=a.end_time,
            )
            for a in history
        ]

    @strawberry.field(
        description="Prepaid credits in `currency` (default: the current plan's, else USD)."
    )
    async def wallet(self, info: strawberry.Info, currency: str | None = None) -> Wallet:
        if currency:
            chosen = currency.upper()
        else:  # the plan `plan` reads too: one batch for both fields
            loaded = await info.context.loaders.current_plan.load(self.customer_id)
            chosen = loaded.plan.currency if loaded is not None else "USD"
        balance = await info.context.loaders.balance.load((self.customer_id, chosen))
        return Wallet(
            customer_id=self.customer_id,
            currency=chosen,
            balance=balance,
            account_id=self.account_id,
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
