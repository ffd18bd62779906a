"""Pricing plans: DRAFT → ACTIVE (immutable; activates its draft meters) → DEPRECATED.
Who is on which plan lives in `assignments`."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import any_, bindparam, select, update
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import InvalidTransitionError, NotFoundError, ValidationError
from meterflow.models import (
    Meter,
    MeterStatus,
    PeriodInterval,
    PlanItem,
    PlanStatus,
    PricingPlan,
)
from meterflow.pricing import invoice as pricing
from meterflow.pricing import money
from meterflow.pricing.models import ByDimension, parse_price_model, to_json
from meterflow.services import meters, validation, webhook_events, webhook_payloads

CURRENCY_RE = re.compile(r"[A-Z]{3}")


@dataclass(frozen=True)
class ItemSpec:
    meter_api_name: str
    price_model: Any
    included_units: Decimal = Decimal(0)


@dataclass(frozen=True)
class PlanSpec:
    name: str
    currency: str = "USD"
    interval: PeriodInterval = PeriodInterval.MONTH
    count: int = 1
    items: tuple[ItemSpec, ...] = ()
    fees: tuple[pricing.Fee, ...] = ()
    discounts: tuple[pricing.Discount, ...] = ()
    minimum_spend: Decimal | None = None
    free_tier_amount: Decimal | None = None
    grace_period_hours: int = 0
    is_default: bool = False


@dataclass
class LoadedPlan:
    plan: PricingPlan
    items: list[tuple[PlanItem, Meter]] = field(default_factory=list)

    def terms(self) -> pricing.Terms:
        plan = self.plan
        return pricing.Terms(
            currency=plan.currency,
            items=tuple(
                pricing.Item(
                    meter.meter_api_name,
                    parse_price_model(item.price_model),
                    Decimal(item.included_units),
                )
                for item, meter in self.items
            ),
            fees=tuple(
                pricing.Fee(f["name"], Decimal(f["amount"]), f["recurring"], f["prorated"])
                for f in plan.fees
            ),
            discounts=tuple(
                pricing.Discount(
                    d["name"],
                    pricing.DiscountKind(d["kind"]),
                    Decimal(d["value"]),
                    d.get("meterApiName"),
                    d.get("periods"),
                    Decimal(d["cap"]) if d.get("cap") is not None else None,
                )
                for d in plan.discounts
            ),
            minimum_spend=plan.minimum_spend,
            free_tier_amount=plan.free_tier_amount,
        )


def _number(value: Any, field_name: str) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValidationError(f"{field_name} is not a number", field=field_name) from exc
    if not amount.is_finite() or amount < 0:
        raise ValidationError(f"{field_name} must be a non-negative number", field=field_name)
    return amount


def _money(value: Any, field_name: str, currency: str) -> Decimal:
    """An amount of money in the plan's currency: it must fit the currency's minor unit."""
    return money.checked_amount(_number(value, field_name), currency, field=field_name)


async def create_plan(
    session: AsyncSession, *, account_id: uuid.UUID, spec: PlanSpec
) -> LoadedPlan:
    name = validation.required_text(spec.name, field="name", max_length=200)
    currency = spec.currency.upper()
    if not CURRENCY_RE.fullmatch(currency):
        raise ValidationError("currency must be a 3-letter ISO 4217 code", field="currency")
    if not 1 <= spec.count <= 120:
        raise ValidationError("billingPeriod.count must be 1-120", field="billingPeriod.count")
    if spec.grace_period_hours < 0:
        raise ValidationError("gracePeriodHours cannot be negative", field="gracePeriodHours")
    names = [i.meter_api_name for i in spec.items]
    if len(set(names)) != len(names):
        raise ValidationError("a meter appears twice in items", field="items")
    found = {
        m.meter_api_name: m
        for m in await session.scalars(
            select(Meter).where(
                col(Meter.account_id) == account_id, col(Meter.meter_api_name).in_(names)
            )
        )
    }
    plan = PricingPlan(
        account_id=account_id,
        name=name,
        currency=currency,
        period_interval=spec.interval,
        period_count=spec.count,
        status=PlanStatus.DRAFT,
        fees=[
            {
                "name": validation.required_text(f.name, field="fees.name", max_length=200),
                "amount": str(_money(f.amount, "fees.amount", currency)),
                "recurring": f.recurring,
                "prorated": f.prorated,
            }
            for f in spec.fees
        ],
        discounts=[_discount_json(d, set(names), currency) for d in spec.discounts],
        minimum_spend=_money(spec.minimum_spend, "minimumSpend", currency)
        if spec.minimum_spend is not None
        else None,
        free_tier_amount=_money(spec.free_tier_amount, "freeTierAmount", currency)
        if spec.free_tier_amount is not None
        else None,
        grace_period_hours=spec.grace_period_hours,
        is_default=False,
    )
    session.add(plan)
    loaded = LoadedPlan(plan)
    for position, item in enumerate(spec.items):
        where = f"items[{position}]"
        meter = found.get(item.meter_api_name)
        if meter is None:
            raise NotFoundError(f"{where}: no meter {item.meter_api_name!r} in this account")
        if meter.status is MeterStatus.DEPRECATED:
            raise ValidationError(
                f"{where}: meter {item.meter_api_name!r} is deprecated",
                field=f"{where}.meterApiName",
            )
        if not meter.use_in_billing:
            raise ValidationError(
                f"{where}: meter {item.meter_api_name!r} has useInBilling false",
                field=f"{where}.meterApiName",
            )
        model = parse_price_model(item.price_model, f"{where}.priceModel")
        if isinstance(model, ByDimension) and meter.dimensions:
            unknown = [d for d in model.dimensions if d not in meter.dimensions]
            if unknown:
                raise ValidationError(
                    f"{where}.priceModel prices by {unknown[0]!r}, which is "
                    f"not a dimension of meter {meter.meter_api_name!r}",
                    field=f"{where}.priceModel.dimensions",
                )
        row = PlanItem(
            account_id=account_id,
            plan_id=plan.id,
            meter_id=meter.id,
            position=position,
            price_model=to_json(model),
            included_units=_number(item.included_units, f"{where}.includedUnits"),
        )
        session.add(row)
        loaded.items.append((row, meter))
    await session.flush()
    if spec.is_default:
        await _make_default(session, account_id, plan)
    return loaded


def _discount_json(discount: pricing.Discount, meters: set[str], currency: str) -> dict[str, Any]:
    if discount.kind is pricing.DiscountKind.PERCENT:  # a rate, not an amount of money
        value = _number(discount.value, "discounts.value")
        if not 0 < value <= 100:
            raise ValidationError(
                "a percentage discount is between 0 and 100", field="discounts.value"
            )
    else:
        value = _money(discount.value, "discounts.value", currency)
    if discount.meter_api_name is not None and discount.meter_api_name not in meters:
        raise ValidationError(
            f"discount {discount.name!r} names meter "
            f"{discount.meter_api_name!r}, which is not an item of the plan",
            field="discounts.meterApiName",
        )
    if discount.periods is not None and discount.periods < 1:
        raise ValidationError("discounts.periods must be at least 1", field="discounts.periods")
    return {
        "name": validation.required_text(discount.name, field="discounts.name", max_length=200),
        "kind": discount.kind.value,
        "value": str(value),
        "meterApiName": discount.meter_api_name,
        "periods": discount.periods,
        "cap": str(_money(discount.cap, "discounts.cap", currency))
        if discount.cap is not None
        else None,
    }


async def _make_default(session: AsyncSession, account_id: uuid.UUID, plan: PricingPlan) -> None:
    await session.execute(
        update(PricingPlan)
        .where(col(PricingPlan.account_id) == account_id, col(PricingPlan.id) != plan.id)
        .values(is_default=False)
    )
    plan.is_default = True
    await session.flush()


async def load_plan(
    session: AsyncSession, *, account_id: uuid.UUID, plan_id: uuid.UUID
) -> LoadedPlan | None:
    plan = await session.scalar(
        select(PricingPlan).where(
            col(PricingPlan.account_id) == account_id, col(PricingPlan.id) == plan_id
        )
    )
    if plan is None:
        return None
    rows = (
        await session.execute(
            select(PlanItem, Meter)
            .join(
                Meter,
                (col(Meter.account_id) == col(PlanItem.account_id))
                & (col(Meter.id) == col(PlanItem.meter_id)),
            )
            .where(col(PlanItem.account_id) == account_id, col(PlanItem.plan_id) == plan_id)
            .order_by(col(PlanItem.position))
        )
    ).all()
    return LoadedPlan(plan, [(item, meter) for item, meter in rows])


async def load_plans(
    session: AsyncSession, *, account_id: uuid.UUID, plan_ids: list[uuid.UUID]
) -> dict[uuid.UUID, LoadedPlan]:
    """Many plans with their items and meters in two statements, however many plans."""
    if not plan_ids:
        return {}
    wanted = any_(bindparam(None, sorted(set(plan_ids)), type_=ARRAY(UUID(as_uuid=True))))
    found = list(
        await session.scalars(
            select(PricingPlan).where(
                col(PricingPlan.account_id) == account_id, col(PricingPlan.id) == wanted
            )
        )
    )
    items: dict[uuid.UUID, list[tuple[PlanItem, Meter]]] = {p.id: [] for p in found}
    rows = await session.execute(
        select(PlanItem, Meter)
        .join(
            Meter,
            (col(Meter.account_id) == col(PlanItem.account_id))
            & (col(Meter.id) == col(PlanItem.meter_id)),
        )
        .where(col(PlanItem.account_id) == account_id, col(PlanItem.plan_id) == wanted)
        .order_by(col(PlanItem.plan_id), col(PlanItem.position))
    )
    for item, meter in rows:
        items[item.plan_id].append((item, meter))
    return {p.id: LoadedPlan(p, items[p.id]) for p in found}


async def list_plans(
    session: AsyncSession, *, account_id: uuid.UUID, status: PlanStatus | None = None
) -> list[LoadedPlan]:
    query = select(col(PricingPlan.id)).where(col(PricingPlan.account_id) == account_id)
    if status is not None:
        query = query.where(col(PricingPlan.status) == status)
    ids = list(await session.scalars(query.order_by(col(PricingPlan.created_at))))
    loaded = await load_plans(session, account_id=account_id, plan_ids=ids)
    return [loaded[i] for i in ids if i in loaded]


async def required(session: AsyncSession, account_id: uuid.UUID, plan_id: uuid.UUID) -> LoadedPlan:
    loaded = await load_plan(session, account_id=account_id, plan_id=plan_id)
    if loaded is None:
        raise NotFoundError(f"no pricing plan {plan_id} in this account")
    return loaded


async def activate_plan(
    session: AsyncSession, *, account_id: uuid.UUID, plan_id: uuid.UUID, now: datetime
) -> LoadedPlan:
    loaded = await required(session, account_id, plan_id)
    if loaded.plan.status is not PlanStatus.DRAFT:
        raise InvalidTransitionError(
            f"plan {plan_id} is {loaded.plan.status}: only a DRAFT plan can be activated "
            "(an active plan is immutable: create a new one to change prices)",
            current_status=loaded.plan.status,
        )
    activated = []
    for _, meter in loaded.items:
        if meter.status is MeterStatus.DRAFT:  # prices lock the meters they rate
            meter.status = MeterStatus.ACTIVE
            meter.activated_at = meter.updated_at = now
            activated.append(meter)
    loaded.plan.status = PlanStatus.ACTIVE
    loaded.plan.activated_at = now
    await session.flush()
    for meter in activated:
        await meters.meter_event(session, meter, "meter.activated", now)
    plan = loaded.plan
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="plan.activated",
        build=lambda: [({"plan": webhook_payloads.plan(plan)}, str(plan.id))],
        now=now,
    )
    return loaded


async def deprecate_plan(
    session: AsyncSession, *, account_id: uuid.UUID, plan_id: uuid.UUID, now: datetime
) -> LoadedPlan:
    loaded = await required(session, account_id, plan_id)
    if loaded.plan.status is PlanStatus.DEPRECATED:
        raise InvalidTransitionError(
            f"plan {plan_id} is already DEPRECATED", current_status=loaded.plan.status
        )
    loaded.plan.status = PlanStatus.DEPRECATED
    loaded.plan.deprecated_at = now
    loaded.plan.is_default = False
    await session.flush()
    return loaded


async def default_plan(session: AsyncSession, account_id: uuid.UUID) -> PricingPlan | None:
    return await session.scalar(
        select(PricingPlan).where(
            col(PricingPlan.account_id) == account_id,
            col(PricingPlan.is_default).is_(True),
            col(PricingPlan.status) == PlanStatus.ACTIVE,
        )
    )
