from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow import models
from meterflow.errors import ConflictError, NotFoundError
from meterflow.pricing import invoice as pricing
from meterflow.pubsub import customer_channels
from meterflow.resolvers.base import (
    Info,
    mutate,
    require_admin,
    require_reader,
    token_customer,
)
from meterflow.schema.billing import (
    AssignPricingPlanInput,
    AssignPricingPlanResult,
    CreatePricingPlanInput,
    CreatePricingPlanResult,
    GrantCreditsInput,
    GrantCreditsResult,
    Invoice,
    InvoiceConnection,
    InvoiceResult,
    PlanAssignment,
    PricingPlan,
    PricingPlanResult,
    Wallet,
)
from meterflow.schema.errors import NotFoundProblem
from meterflow.schema.list_orders import InvoiceFilter, InvoiceOrder, query_errors, with_cursors
from meterflow.services import (
    assignments,
    invoice_lifecycle,
    invoice_queries,
    invoice_rating,
    outbox,
    period_close,
    plans,
    rollup_work,
    wallets,
)
from meterflow.services.pagination import page_size


def _plan_id(value: strawberry.ID) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFoundError(f"no pricing plan {value}") from exc


def _spec(input: CreatePricingPlanInput) -> plans.PlanSpec:
    return plans.PlanSpec(
        name=input.name,
        currency=input.currency,
        interval=input.billing_period.interval,
        count=input.billing_period.count,
        items=tuple(
            plans.ItemSpec(i.meter_api_name, i.price_model, i.included_units or pricing.ZERO)
            for i in input.items
        ),
        fees=tuple(
            pricing.Fee(f.name, f.amount, f.recurring, f.prorated) for f in input.fees or ()
        ),
        discounts=tuple(
            pricing.Discount(
                d.name,
                pricing.DiscountKind(d.kind.value),
                d.value,
                d.meter_api_name,
                d.periods,
                d.cap,
            )
            for d in input.discounts or ()
        ),
        minimum_spend=input.minimum_spend,
        free_tier_amount=input.free_tier_amount,
        grace_period_hours=input.grace_period_hours,
        is_default=input.is_default,
    )


async def wallet_currency(
    session: AsyncSession,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str | None,
    now: datetime,
) -> str:
    if currency:
        return currency.upper()
    assignment = await assignments.assignment_at(
        session, account_id=account_id, customer_id=customer_id, moment=now
    )
    if assignment is not None:
        loaded = await plans.load_plan(session, account_id=account_id, plan_id=assignment.plan_id)
        if loaded is not None:
            return loaded.plan.currency
    return "USD"


@strawberry.type
class BillingQueries:
    @strawberry.field
    async def pricing_plan(self, info: Info, id: strawberry.ID) -> PricingPlan | None:
        principal = require_admin(info)
        try:
            plan_id = _plan_id(id)
        except NotFoundError:
            return None
        async with info.context.session_factory() as session:
            loaded = await plans.load_plan(
                session, account_id=principal.account_id, plan_id=plan_id
            )
        return PricingPlan.from_loaded(loaded) if loaded else None

    @strawberry.field
    async def pricing_plans(
        self, info: Info, status: models.PlanStatus | None = None
    ) -> list[PricingPlan]:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            rows = await plans.list_plans(session, account_id=principal.account_id, status=status)
        return [PricingPlan.from_loaded(row) for row in rows]

    @strawberry.field(description="The running invoice of the current period, or null.")
    async def current_invoice(self, info: Info, customer_id: str) -> Invoice | None:
        account_id = require_reader(info, customer_id)
        async with info.context.unit_of_work() as session:
            row = await invoice_queries.current_invoice(
                session,
                account_id=account_id,
                customer_id=customer_id,
                now=datetime.now(UTC),
            )
        return Invoice.from_model(row) if row else None

    @strawberry.field(
        description="Invoices, filtered and ordered (by default: newest period first). An admin "
        "key lists every customer's; a session token only its customer's. A cursor belongs to "
        "the order it was made under."
    )
    async def invoices(
        self,
        info: Info,
        customer_id: str | None = None,
        status: models.InvoiceStatus | None = None,
        first: int | None = None,
        after: str | None = None,
        filter: InvoiceFilter | None = None,
        order_by: InvoiceOrder | None = None,
    ) -> InvoiceConnection:
        customer_id = customer_id if customer_id is not None else token_customer(info)
        account_id = require_reader(info, customer_id)
        filter = filter or InvoiceFilter()
        if filter.customer_id is not None:
            require_reader(info, filter.customer_id)  # a session token: its own customer only
        order_by = order_by or InvoiceOrder()
        with query_errors():
            limit = page_size(first, maximum=info.context.max_page_size)
            async with info.context.session_factory() as session:
                page = await invoice_queries.list_invoices(
                    session,
                    account_id=account_id,
                    customer_id=customer_id,
                    status=status,
                    limit=limit,
                    after=after,
                    filter=invoice_queries.InvoiceFilter(
                        status=filter.status,
                        customer_id=filter.customer_id,
                        period_start_from=filter.period_start_from,
                        period_start_to=filter.period_start_to,
                    ),
                    order_field=order_by.field,
                    direction=order_by.direction,
                )
        return with_cursors(InvoiceConnection.from_page(page), page)

    @strawberry.field
    async def wallet(
        self, info: Info, customer_id: str, currency: str | None = None
    ) -> Wallet | None:
        account_id = require_reader(info, customer_id)
        now = datetime.now(UTC)
        async with info.context.session_factory() as session:
            chosen = await wallet_currency(session, account_id, customer_id, currency, now)
            left = await wallets.balance(
                session,
                account_id=account_id,
                customer_id=customer_id,
                currency=chosen,
                now=now,
            )
        return Wallet(customer_id=customer_id, currency=chosen, balance=left, account_id=account_id)


@strawberry.type
class BillingMutations:
    @strawberry.mutation(description="Create a plan in DRAFT.")
    async def create_pricing_plan(
        self, info: Info, input: CreatePricingPlanInput
    ) -> CreatePricingPlanResult:
        return await mutate(
            info,
            lambda session, principal: plans.create_plan(
                session, account_id=principal.account_id, spec=_spec(input)
            ),
            PricingPlan.from_loaded,
        )

    @strawberry.mutation(description="DRAFT → ACTIVE: prices lock; draft meters activate.")
    async def activate_pricing_plan(self, info: Info, id: strawberry.ID) -> PricingPlanResult:
        return await mutate(
            info,
            lambda session, principal: plans.activate_plan(
                session,
                account_id=principal.account_id,
                plan_id=_plan_id(id),
                now=datetime.now(UTC),
            ),
            PricingPlan.from_loaded,
        )

    @strawberry.mutation(description="→ DEPRECATED: no new assignments.")
    async def deprecate_pricing_plan(self, info: Info, id: strawberry.ID) -> PricingPlanResult:
        return await mutate(
            info,
            lambda session, principal: plans.deprecate_plan(
                session,
                account_id=principal.account_id,
                plan_id=_plan_id(id),
                now=datetime.now(UTC),
            ),
            PricingPlan.from_loaded,
        )

    @strawberry.mutation(description="Put a customer on a plan; the open invoice is re-rated.")
    async def assign_pricing_plan(
        self, info: Info, input: AssignPricingPlanInput
    ) -> AssignPricingPlanResult:
        async def assign(session: AsyncSession, principal: Any) -> models.PlanAssignment:
            now = datetime.now(UTC)
            assignment = await assignments.assign_plan(
                session,
                account_id=principal.account_id,
                customer_id=input.customer_id,
                plan_id=_plan_id(input.plan_id),
                start_time=input.start_time,
                now=now,
            )
            await invoice_rating.rerate_customer(
                session, account_id=principal.account_id, customer_id=input.customer_id, now=now
            )
            return assignment

        result = await mutate(
            info,
            assign,
            lambda a: PlanAssignment(
                customer_id=a.customer_id,
                plan_id=strawberry.ID(str(a.plan_id)),
                start_time=a.start_time,
                end_time=a.end_time,
            ),
        )
        # Subscribers re-read the truth: a refused change just shows the same state again.
        principal = require_admin(info)
        await info.context.publish(*customer_channels(principal.account_id, input.customer_id))
        return result

    @strawberry.mutation(
        description="Close an OPEN or GRACE invoice now (an operator's decision, a customer "
        "leaving): it includes every event committed before this call. Its period stays; "
        "later events of that period are late, as after a normal close."
    )
    async def finalize_invoice(self, info: Info, id: strawberry.ID) -> InvoiceResult:
        principal = require_admin(info)
        try:
            invoice_id = uuid.UUID(str(id))
        except ValueError:
            return NotFoundProblem(
                code=NotFoundError.code, message=f"no invoice {id} in this account"
            )
        # The watermark gate, before the unit of work: its rollup steps commit on their own.
        caught = await period_close.catch_up(
            info.context.session_factory, account_id=principal.account_id
        )

        async def finalize(session: AsyncSession, principal: Any) -> models.Invoice:
            if not caught.caught_up:
                raise ConflictError(
                    "usage is still being rolled up (a long ingest transaction is in flight); "
                    "try again in a few seconds"
                )
            return await invoice_lifecycle.finalize_invoice(
                session,
                account_id=principal.account_id,
                invoice_id=invoice_id,
                now=datetime.now(UTC),
            )

        result = await mutate(info, finalize, Invoice.from_model)
        jobs = info.context.jobs
        if jobs is not None and caught.touched:
            # The catch-up recorded its re-rates and alert evaluations in the outbox: start them
            # now (the sweep would, within seconds, if this enqueue is lost).
            for kind in rollup_work.CAUSED_KINDS:
                await jobs.run_outbox(principal.account_id, kind)
        if isinstance(result, Invoice):
            if jobs is not None:  # collection through Stripe, if the account has connected it
                await jobs.run_outbox(principal.account_id, outbox.SYNC_INVOICE)
            await info.context.publish(*customer_channels(principal.account_id, result.customer_id))
        return result

    @strawberry.mutation(
        description="Void a FINALIZED or UNCOLLECTIBLE invoice (not one collected through "
        "Stripe: void that in Stripe): nothing is owed for it, its credits go back to the wallet."
    )
    async def void_invoice(self, info: Info, id: strawberry.ID) -> InvoiceResult:
        principal = require_admin(info)
        try:
            invoice_id = uuid.UUID(str(id))
        except ValueError:
            return NotFoundProblem(
                code=NotFoundError.code, message=f"no invoice {id} in this account"
            )
        result = await mutate(
            info,
            lambda session, principal: invoice_lifecycle.void_invoice(
                session,
                account_id=principal.account_id,
                invoice_id=invoice_id,
                now=datetime.now(UTC),
            ),
            Invoice.from_model,
        )
        if isinstance(result, Invoice):
            await info.context.publish(*customer_channels(principal.account_id, result.customer_id))
        return result

    @strawberry.mutation(description="Add prepaid credits; they apply to the open invoice now.")
    async def grant_credits(self, info: Info, input: GrantCreditsInput) -> GrantCreditsResult:
        async def grant(session: AsyncSession, principal: Any) -> Wallet:
            now = datetime.now(UTC)
            money = await wallet_currency(
                session, principal.account_id, input.customer_id, None, now
            )
            currency = (input.currency or money).upper()
            await wallets.grant(
                session,
                account_id=principal.account_id,
                customer_id=input.customer_id,
                amount=input.amount,
                currency=currency,
                priority=input.priority,
                expires_at=input.expires_at,
                reason=input.reason,
                purchased=input.purchased,
                now=now,
                money_currency=money,
                ratio=input.ratio,
            )
            await invoice_rating.rerate_customer(
                session, account_id=principal.account_id, customer_id=input.customer_id, now=now
            )
            left = await wallets.balance(
                session,
                account_id=principal.account_id,
                customer_id=input.customer_id,
                currency=currency,
                now=now,
            )
            return Wallet(
                customer_id=input.customer_id,
                currency=currency,
                balance=left,
                account_id=principal.account_id,
            )

        result = await mutate(info, grant, lambda wallet: wallet)
        principal = require_admin(info)
        await info.context.publish(*customer_channels(principal.account_id, input.customer_id))
        return result
