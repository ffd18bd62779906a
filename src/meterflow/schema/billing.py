from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.scalars import JSON

from meterflow import models
from meterflow.pricing.money import written
from meterflow.schema.errors import (
    ConflictProblem,
    InvalidTransitionProblem,
    NotFoundProblem,
    ValidationProblem,
)
from meterflow.schema.pagination import PageInfo
from meterflow.schema.payments import AutoTopUp, InvoicePayment
from meterflow.services import plans
from meterflow.services.pagination import Page, encode_cursor

if TYPE_CHECKING:
    from meterflow.services.wallet_statement import StatementLine

strawberry.enum(models.PlanStatus, name="PlanStatus")
strawberry.enum(models.PeriodInterval, name="BillingInterval")
strawberry.enum(models.InvoiceStatus, name="InvoiceStatus")
strawberry.enum(models.LedgerKind, name="LedgerKind")


@strawberry.enum
class DiscountKind(enum.Enum):
    PERCENT = "PERCENT"
    FIXED = "FIXED"


@strawberry.input
class BillingPeriodInput:
    interval: models.PeriodInterval
    count: int = 1


@strawberry.input
class PlanItemInput:
    meter_api_name: str
    price_model: JSON = strawberry.field(description="e.g. {type: per_unit, unitPrice: '0.01'}")
    included_units: Decimal | None = strawberry.field(
        default=None, description="Free units per billing period, taken off first."
    )


@strawberry.input
class PlanFeeInput:
    name: str
    amount: Decimal
    recurring: bool = True
    prorated: bool = False


@strawberry.input
class PlanDiscountInput:
    name: str
    kind: DiscountKind
    value: Decimal = strawberry.field(description="Percent, or an amount of money.")
    meter_api_name: str | None = strawberry.field(default=None, description="Item-level if set.")
    periods: int | None = strawberry.field(
        default=None, description="First N periods; null = forever."
    )
    cap: Decimal | None = None


@strawberry.input
class CreatePricingPlanInput:
    name: str
    billing_period: BillingPeriodInput
    items: list[PlanItemInput]
    currency: str = "USD"
    fees: list[PlanFeeInput] | None = None
    discounts: list[PlanDiscountInput] | None = None
    minimum_spend: Decimal | None = None
    free_tier_amount: Decimal | None = strawberry.field(
        default=None, description="Plan-level free tier: this much usage is free each period."
    )
    grace_period_hours: int = 0
    is_default: bool = False


@strawberry.type
class BillingPeriod:
    interval: models.PeriodInterval
    count: int


@strawberry.type
class PlanItem:
    meter_api_name: str
    price_model: JSON
    included_units: Decimal


@strawberry.type
class PricingPlan:
    id: strawberry.ID
    name: str
    currency: str
    billing_period: BillingPeriod
    status: models.PlanStatus
    items: list[PlanItem]
    fees: JSON
    discounts: JSON
    minimum_spend: Decimal | None
    free_tier_amount: Decimal | None
    grace_period_hours: int
    is_default: bool
    created_at: datetime
    activated_at: datetime | None

    @classmethod
    def from_loaded(cls, loaded: plans.LoadedPlan) -> PricingPlan:
        plan = loaded.plan
        return cls(
            id=strawberry.ID(str(plan.id)),
            name=plan.name,
            currency=plan.currency,
            billing_period=BillingPeriod(interval=plan.period_interval, count=plan.period_count),
            status=plan.status,
            items=[
                PlanItem(
                    meter_api_name=meter.meter_api_name,
                    price_model=JSON(item.price_model),
                    included_units=Decimal(item.included_units),
                )
                for item, meter in loaded.items
            ],
            fees=JSON([{**f, "amount": _money(f["amount"], plan.currency)} for f in plan.fees]),
            discounts=JSON([_discount_out(d, plan.currency) for d in plan.discounts]),
            minimum_spend=None
            if plan.minimum_spend is None
            else written(plan.minimum_spend, plan.currency),
            free_tier_amount=None
            if plan.free_tier_amount is None
            else written(plan.free_tier_amount, plan.currency),
            grace_period_hours=plan.grace_period_hours,
            is_default=plan.is_default,
            created_at=plan.created_at,
            activated_at=plan.activated_at,
        )


def _money(stored: str | None, currency: str) -> str | None:
    """A money figure of a plan's JSON, written at the currency's minor unit (stored as text)."""
    return None if stored is None else str(written(Decimal(stored), currency))


def _discount_out(discount: dict[str, object], currency: str) -> dict[str, object]:
    fixed = discount.get("kind") == "FIXED"  # a percentage is a rate, not money
    value = discount.get("value")
    return {
        **discount,
        "value": _money(str(value), currency) if fixed and value is not None else value,
        "cap": _money(discount.get("cap"), currency),  # type: ignore[arg-type]
    }


@strawberry.input
class AssignPricingPlanInput:
    customer_id: str
    plan_id: strawberry.ID
    start_time: datetime | None = strawberry.field(
        default=None, description="Default: the start of the current billing period."
    )


@strawberry.type
class PlanAssignment:
    customer_id: str
    plan_id: strawberry.ID
    start_time: datetime
    end_time: datetime | None


@strawberry.type
class InvoiceTier:
    tier: int
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal


@strawberry.type
class InvoiceLine:
    kind: str
    name: str
    meter_api_name: str | None
    dimensions: JSON
    units: Decimal
    billable_units: Decimal
    amount: Decimal
    priced: bool
    tiers: list[InvoiceTier]


@strawberry.type
class AppliedDiscount:
    name: str
    amount: Decimal


@strawberry.type
class Invoice:
    id: strawberry.ID
    customer_id: str
    plan_id: strawberry.ID
    period_start: datetime
    period_end: datetime
    status: models.InvoiceStatus
    currency: str
    lines: list[InvoiceLine]
    discounts: list[AppliedDiscount]
    subtotal: Decimal
    discount: Decimal
    credits_applied: Decimal
    total: Decimal = strawberry.field(description="Amount due after discounts and credits.")
    updated_at: datetime
    finalized_at: datetime | None
    account_id: strawberry.Private[uuid.UUID]

    @strawberry.field(
        description="How the invoice is being collected (Stripe), once it is finalized in an "
        "account that collects through Stripe; else null."
    )
    async def payment(self, info: strawberry.Info) -> InvoicePayment | None:
        row = await info.context.loaders.payment.load(uuid.UUID(str(self.id)))
        return InvoicePayment.from_model(row) if row else None

    @classmethod
    def from_model(cls, row: models.Invoice) -> Invoice:
        currency = row.currency
        return cls(
            account_id=row.account_id,
            id=strawberry.ID(str(row.id)),
            customer_id=row.customer_id,
            plan_id=strawberry.ID(str(row.plan_id)),
            period_start=row.period_start,
            period_end=row.period_end,
            status=row.status,
            currency=row.currency,
            lines=[
                InvoiceLine(
                    kind=line["kind"],
                    name=line["name"],
                    meter_api_name=line["meterApiName"],
                    dimensions=JSON(line["dimensions"]),
                    units=Decimal(line["units"]),
                    billable_units=Decimal(line["billableUnits"]),
                    amount=written(Decimal(line["amount"]), currency),
                    priced=line["priced"],
                    tiers=[
                        InvoiceTier(
                            tier=t["tier"],
                            quantity=Decimal(t["quantity"]),
                            unit_price=Decimal(t["unitPrice"]),
                            flat_fee=Decimal(t["flatFee"]),
                            amount=Decimal(t["amount"]),
                        )
                        for t in line["tiers"]
                    ],
                )
                for line in row.lines
            ],
            discounts=[
                AppliedDiscount(name=d["name"], amount=written(Decimal(d["amount"]), currency))
                for d in row.discounts
            ],
            subtotal=written(row.subtotal, currency),
            discount=written(row.discount, currency),
            credits_applied=written(row.credits_applied, currency),
            total=written(row.total, currency),
            updated_at=row.updated_at,
            finalized_at=row.finalized_at,
        )


@strawberry.type
class InvoiceEdge:
    cursor: str
    node: Invoice


@strawberry.type
class InvoiceConnection:
    edges: list[InvoiceEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[models.Invoice]) -> InvoiceConnection:
        edges = [
            InvoiceEdge(
                cursor=encode_cursor(row.period_start, row.id), node=Invoice.from_model(row)
            )
            for row in page.items
        ]
        return cls(
            edges=edges,
            page_info=PageInfo.of(edges, page.has_next_page),
        )


@strawberry.input
class GrantCreditsInput:
    customer_id: str
    amount: Decimal
    currency: str | None = strawberry.field(
        default=None, description="Default: the customer's plan currency."
    )
    priority: int = strawberry.field(default=100, description="Lower is drawn first.")
    expires_at: datetime | None = None
    reason: str | None = None
    purchased: bool = strawberry.field(default=True, description="False for free credits.")
    ratio: Decimal | None = strawberry.field(
        default=None,
        description="Custom currency: what one unit is worth in the plan's currency "
        '(e.g. currency "CREDITS", ratio "0.01"). Required when currency is not the plan\'s.',
    )


@strawberry.type(
    description="A line of the wallet's statement: GRANT (credits added), CONSUMPTION (what one "
    "invoice currently holds of one grant: one line per invoice and grant, moving with the "
    "invoice until it is finalized) or EXPIRY (what was left of a grant when it expired)."
)
class WalletLedgerEntry:
    id: strawberry.ID
    kind: models.LedgerKind
    amount: Decimal = strawberry.field(description="Signed: grants add, the rest take away.")
    balance_after: Decimal = strawberry.field(
        description="The running balance: this line and every earlier one, as they stand now."
    )
    invoice_id: strawberry.ID | None
    invoice_period_start: datetime | None = strawberry.field(
        description="CONSUMPTION: the billing period of the invoice."
    )
    invoice_period_end: datetime | None
    grant_id: strawberry.ID | None
    reason: str | None = strawberry.field(
        description="GRANT: why the credits were added (a top-up names its Stripe invoice)."
    )
    created_at: datetime
    updated_at: datetime = strawberry.field(
        description="When the line last moved (a CONSUMPTION line moves with its invoice)."
    )

    @classmethod
    def from_line(cls, line: StatementLine) -> WalletLedgerEntry:
        row = line.entry
        return cls(
            id=strawberry.ID(str(row.seq)),
            kind=row.kind,
            amount=written(row.amount, row.currency),
            balance_after=written(line.balance_after, row.currency),
            invoice_id=strawberry.ID(str(row.invoice_id)) if row.invoice_id else None,
            invoice_period_start=line.period_start,
            invoice_period_end=line.period_end,
            grant_id=strawberry.ID(str(row.grant_id)) if row.grant_id else None,
            reason=line.reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@strawberry.type
class WalletLedgerEdge:
    cursor: str
    node: WalletLedgerEntry


@strawberry.type
class WalletLedgerConnection:
    edges: list[WalletLedgerEdge]
    page_info: PageInfo


CreatePricingPlanResult = Annotated[
    PricingPlan | ValidationProblem | NotFoundProblem, strawberry.union("CreatePricingPlanResult")
]
PricingPlanResult = Annotated[
    PricingPlan | NotFoundProblem | InvalidTransitionProblem,
    strawberry.union("PricingPlanResult"),
]
InvoiceResult = Annotated[
    Invoice | NotFoundProblem | InvalidTransitionProblem | ConflictProblem,
    strawberry.union("InvoiceResult"),
]
AssignPricingPlanResult = Annotated[
    PlanAssignment | NotFoundProblem | InvalidTransitionProblem | ValidationProblem,
    strawberry.union("AssignPricingPlanResult"),
]


@strawberry.type
class Wallet:
    customer_id: str
    currency: str
    balance: Decimal = strawberry.field(
        description="Credits left, after what running invoices have drawn down."
    )
    account_id: strawberry.Private[object]

    def __post_init__(self) -> None:
        self.balance = written(self.balance, self.currency)  # "0.00", not "0"

    @strawberry.field(
        description="The statement: grants, consumption per invoice and grant, expiries; oldest "
        "first."
    )
    async def ledger(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> WalletLedgerConnection:
        from meterflow.services.pagination import page_size

        limit = page_size(first, maximum=info.context.max_page_size)
        position = int(after) if after and after.isdigit() else None
        # A page of wallets reads its statements in one batch.
        page = await info.context.loaders.ledger.load(
            (self.customer_id, self.currency, limit, position)
        )
        edges = [
            WalletLedgerEdge(cursor=str(line.entry.seq), node=WalletLedgerEntry.from_line(line))
            for line in page.items
        ]
        return WalletLedgerConnection(
            edges=edges,
            page_info=PageInfo.of(edges, page.has_next_page),
        )

    @strawberry.field(description="The automatic top-up rule of this wallet, if one is set.")
    async def auto_top_up(self, info: strawberry.Info) -> AutoTopUp | None:
        row = await info.context.loaders.auto_top_up.load((self.customer_id, self.currency))
        return AutoTopUp.from_model(row) if row else None


GrantCreditsResult = Annotated[
    Wallet | ValidationProblem | NotFoundProblem, strawberry.union("GrantCreditsResult")
]
