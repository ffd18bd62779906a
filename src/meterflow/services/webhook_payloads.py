"""What an event's `data` says about the object it concerns: the object as GraphQL shows it
(camelCase, decimals as strings, money at the currency's minor unit, times in ISO 8601 UTC),
frozen at the moment of the event. Pure."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from meterflow.models import (
    AlertEvent,
    AlertRule,
    CreditGrant,
    Customer,
    Invoice,
    Meter,
    PlanAssignment,
    PricingPlan,
    TopUp,
    WebhookEndpoint,
)
from meterflow.pricing.money import written


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _money(value: Decimal | str, currency: str) -> str:
    return str(written(Decimal(value), currency))


def invoice(row: Invoice) -> dict[str, Any]:
    c = row.currency
    return {
        "id": str(row.id),
        "customerId": row.customer_id,
        "planId": str(row.plan_id),
        "periodStart": _time(row.period_start),
        "periodEnd": _time(row.period_end),
        "status": row.status.value,
        "currency": c,
        "lines": [
            {
                "kind": line["kind"],
                "name": line["name"],
                "meterApiName": line["meterApiName"],
                "dimensions": line["dimensions"],
                "units": str(line["units"]),
                "billableUnits": str(line["billableUnits"]),
                "amount": _money(line["amount"], c),
            }
            for line in row.lines
        ],
        "discounts": [{"name": d["name"], "amount": _money(d["amount"], c)} for d in row.discounts],
        "subtotal": _money(row.subtotal, c),
        "discount": _money(row.discount, c),
        "creditsApplied": _money(row.credits_applied, c),
        "total": _money(row.total, c),
        "updatedAt": _time(row.updated_at),
        "finalizedAt": _time(row.finalized_at),
    }


def customer(row: Customer) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "customerId": row.customer_id,
        "name": row.name,
        "email": row.email,
        "traits": row.traits,
        "enabled": row.enabled,
        "stripeCustomerId": row.stripe_customer_id,
        "createdAt": _time(row.created_at),
        "updatedAt": _time(row.updated_at),
    }


def meter(row: Meter) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "meterApiName": row.meter_api_name,
        "label": row.label,
        "description": row.description,
        "unit": row.unit,
        "meterType": row.meter_type.value,
        "dimensions": list(row.dimensions),
        "aggregationDimension": row.aggregation_dimension,
        "useInBilling": row.use_in_billing,
        "status": row.status.value,
        "activatedAt": _time(row.activated_at),
        "deprecatedAt": _time(row.deprecated_at),
    }


def plan(row: PricingPlan) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "name": row.name,
        "currency": row.currency,
        "billingPeriod": {"interval": row.period_interval.value, "count": row.period_count},
        "status": row.status.value,
        "isDefault": row.is_default,
        "activatedAt": _time(row.activated_at),
    }


def assignment(row: PlanAssignment) -> dict[str, Any]:
    return {
        "customerId": row.customer_id,
        "planId": str(row.plan_id),
        "startTime": _time(row.start_time),
        "endTime": _time(row.end_time),
    }


def grant(row: CreditGrant) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "customerId": row.customer_id,
        "currency": row.currency,
        "amount": _money(row.amount, row.currency) if len(row.currency) == 3 else str(row.amount),
        "priority": row.priority,
        "purchased": row.purchased,
        "reason": row.reason,
        "expiresAt": _time(row.expires_at),
        "createdAt": _time(row.created_at),
    }


def wallet(customer_id: str, currency: str, balance: Decimal) -> dict[str, Any]:
    return {"customerId": customer_id, "currency": currency, "balance": _money(balance, currency)}


def top_up(row: TopUp) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "customerId": row.customer_id,
        "status": row.status.value,
        "amount": _money(row.amount, row.currency),
        "currency": row.currency,
        "automatic": row.automatic,
        "externalId": row.external_id,
        "paidAt": _time(row.paid_at),
    }


def alert(event: AlertEvent, rule: AlertRule) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "ruleId": str(rule.id),
        "ruleName": rule.name,
        "subject": rule.subject,
        "condition": rule.condition,
        "threshold": str(rule.threshold),
        "range": rule.range,
        "customerId": event.customer_id,
        "periodStart": _time(event.period_start),
        "value": str(event.value),
        "currency": event.currency,
        "message": event.message,
        "createdAt": _time(event.created_at),
    }


def endpoint(row: WebhookEndpoint) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "description": row.description,
        "enabled": row.enabled,
        "disabledAt": _time(row.disabled_at),
    }
