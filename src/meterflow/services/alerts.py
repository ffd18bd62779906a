"""Alert rules and their evaluation: on the rollup path (seconds after the event), and at
period ends for percentage drops. A rule fires at most once per customer per period."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow import netguard
from meterflow.errors import NotFoundError, ValidationError
from meterflow.models import (
    AlertDelivery,
    AlertEvent,
    AlertRule,
    Customer,
    Invoice,
    InvoiceStatus,
    Meter,
)
from meterflow.secretbox import SecretBox, UnreadableSecretError
from meterflow.services import meters, outbox, usage, validation, wallets
from meterflow.services.timebuckets import Grouping, floor, following

SUBJECTS = ("USAGE", "COST", "BALANCE")
CONDITIONS = ("GREATER_THAN", "LESS_THAN", "PERCENT_CHANGE")
CHANNELS = ("WEBHOOK", "SLACK", "EMAIL")
HUNDRED = Decimal(100)
# Channels whose URL is a credential (a Slack incoming webhook URL is its own secret; webhook
# URLs often carry tokens): stored sealed, like every webhook signing secret.
SEALED_CHANNELS = ("WEBHOOK", "SLACK")
UNREADABLE = "(unreadable: sealed with a secret key that is no longer configured)"


def _reseal(box: SecretBox, value: str) -> str:
    try:
        return box.rotate(value)
    except UnreadableSecretError:
        return value  # left for an operator who still has its key


def seal_channel(box: SecretBox, channel: dict[str, Any]) -> dict[str, Any]:
    """A channel as stored. Sealed values are re-sealed under the current key and clear ones
    (rows from before encryption) get sealed, so every write also rotates."""
    stored = dict(channel)
    if stored["type"] in SEALED_CHANNELS:
        stored["target"] = _reseal(box, stored["target"])
    if stored.get("secret"):
        stored["secret"] = _reseal(box, stored["secret"])
    return stored


def open_channel(box: SecretBox, channel: dict[str, Any]) -> dict[str, Any]:
    """A stored channel in clear, for the one place that needs it: the delivery."""
    opened = {**channel, "target": box.open(channel["target"])}
    if channel.get("secret"):
        opened["secret"] = box.open(channel["secret"])
    return opened


def shown_target(box: SecretBox, target: str) -> str:
    """A stored target as the admin API shows it (never the secret)."""
    try:
        return box.open(target)
    except UnreadableSecretError:
        return UNREADABLE


@dataclass(frozen=True)
class RuleSpec:
    name: str
    subject: str
    condition: str
    threshold: Decimal
    range: str
    meter_api_name: str | None = None
    customer_id: str | None = None
    channels: tuple[dict[str, Any], ...] = ()


async def create_rule(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    spec: RuleSpec,
    allow_private_targets: bool = False,
    box: SecretBox,
    resolve: netguard.Resolver = netguard.system_resolver,
) -> AlertRule:
    """`allow_private_targets` is the development switch: plain http and any address."""
    name = validation.required_text(spec.name, field="name", max_length=200)
    if spec.subject not in SUBJECTS:
        raise ValidationError(f"subject must be one of {SUBJECTS}", field="subject")
    if spec.condition not in CONDITIONS:
        raise ValidationError(f"condition must be one of {CONDITIONS}", field="condition")
    Grouping(spec.range)
    meter_id = None
    if spec.subject == "USAGE":
        if not spec.meter_api_name:
            raise ValidationError("a USAGE rule names its meterApiName", field="meterApiName")
        meter = await meters.get_meter(
            session, account_id=account_id, meter_api_name=spec.meter_api_name
        )
        if meter is None:
            raise NotFoundError(f"no meter {spec.meter_api_name!r} in this account")
        meter_id = meter.id
    channels = []
    for i, channel in enumerate(spec.channels):
        kind = str(channel.get("type", "")).upper()
        target = str(channel.get("target") or "")
        if kind not in CHANNELS:
            raise ValidationError(
                f"channels[{i}].type must be one of {CHANNELS}", field=f"channels[{i}].type"
            )
        if kind in ("WEBHOOK", "SLACK"):
            try:
                await netguard.check_target(
                    target, allow_private=allow_private_targets, resolve=resolve
                )
            except netguard.TargetRefused as exc:
                raise ValidationError(
                    f"rule {name!r}: channels[{i}] ({kind}) {exc.reason}",
                    field=f"channels[{i}].target",
                ) from None
        if kind == "EMAIL":
            validation.email(target, field=f"channels[{i}].target")
        channels.append(
            seal_channel(box, {"type": kind, "target": target, "secret": channel.get("secret")})
        )
    rule = AlertRule(
        account_id=account_id,
        name=name,
        subject=spec.subject,
        meter_id=meter_id,
        condition=spec.condition,
        threshold=spec.threshold,
        range=spec.range,
        customer_id=spec.customer_id,
        channels=channels,
    )
    session.add(rule)
    await session.flush()
    return rule


async def list_rules(session: AsyncSession, *, account_id: uuid.UUID) -> list[AlertRule]:
    return list(
        await session.scalars(
            select(AlertRule)
            .where(col(AlertRule.account_id) == account_id)
            .order_by(col(AlertRule.created_at))
        )
    )


async def delete_rule(
    session: AsyncSession, *, account_id: uuid.UUID, rule_id: uuid.UUID, box: SecretBox
) -> AlertRule:
    rule = await session.scalar(
        select(AlertRule).where(
            col(AlertRule.account_id) == account_id, col(AlertRule.id) == rule_id
        )
    )
    if rule is None:
        raise NotFoundError(f"no alert rule {rule_id}")
    rule.enabled = False
    rule.channels = [seal_channel(box, c) for c in rule.channels]
    await session.flush()
    return rule


async def _values(
    session: AsyncSession,
    rule: AlertRule,
    customers: list[str],
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Decimal]:
    """The rule's subject per customer over [start, end)."""
    if rule.subject == "USAGE":
        meter = await session.scalar(
            select(Meter).where(
                col(Meter.account_id) == rule.account_id,
                col(Meter.id) == rule.meter_id,
            )
        )
        if meter is None:
            return {}
        answer = await usage.query_usage(
            session,
            account_id=rule.account_id,
            now=now,
            query=usage.UsageQuery(
                meter.meter_api_name,
                Grouping(rule.range),
                start,
                end,
                group_by=(usage.CUSTOMER,),
                filter={usage.CUSTOMER: customers},
            ),
            limits=usage.INTERNAL,  # every customer of a rule: sized by the data, not a caller
        )
        totals = {g.group[usage.CUSTOMER]: g.total for g in answer.groups}
        return {c: totals.get(c, Decimal(0)) for c in customers}
    if rule.subject == "COST":  # what the running invoice charges before credits
        rows = await session.scalars(
            select(Invoice).where(
                col(Invoice.account_id) == rule.account_id,
                col(Invoice.customer_id).in_(customers),
                col(Invoice.status).in_((InvoiceStatus.OPEN, InvoiceStatus.GRACE)),
                col(Invoice.period_start) <= now,
                col(Invoice.period_end) > now,
            )
        )
        return {i.customer_id: Decimal(i.subtotal) - Decimal(i.discount) for i in rows}
    balances = {}
    for customer in customers:
        balances[customer] = await wallets.balance(
            session, account_id=rule.account_id, customer_id=customer, currency="USD", now=now
        )
    return balances


def _crossed(rule: AlertRule, value: Decimal, previous: Decimal | None) -> bool:
    threshold = Decimal(rule.threshold)
    if rule.condition == "GREATER_THAN":
        return value > threshold
    if rule.condition == "LESS_THAN":
        return value < threshold
    if previous is None or previous == 0:
        return False
    change = (value - previous) / previous * HUNDRED
    return change <= threshold if threshold < 0 else change >= threshold


async def _fire(
    session: AsyncSession,
    rule: AlertRule,
    customer: str,
    period: datetime,
    value: Decimal,
    previous: Decimal | None,
) -> AlertEvent | None:
    what = {"USAGE": "usage", "COST": "cost", "BALANCE": "prepaid balance"}[rule.subject]
    if rule.condition == "PERCENT_CHANGE":
        change = (value - previous) / previous * HUNDRED if previous else Decimal(0)
        message = (
            f"{rule.name}: {customer}'s {what} this {rule.range.lower()} is {value} "
            f"({change.quantize(Decimal('0.1'))}% vs {previous} the previous one)"
        )
    else:
        relation = "above" if rule.condition == "GREATER_THAN" else "below"
        message = (
            f"{rule.name}: {customer}'s {what} this {rule.range.lower()} is {value}, "
            f"{relation} {rule.threshold}"
        )
    event = await session.scalar(
        insert(AlertEvent)
        .values(
            account_id=rule.account_id,
            id=uuid.uuid4(),
            rule_id=rule.id,
            customer_id=customer,
            period_start=period,
            value=value,
            message=message,
        )
        .on_conflict_do_nothing(constraint="uq_alert_events_once_per_period")
        .returning(AlertEvent)
    )
    if event is None:
        return None  # already fired for this customer in this period
    deliveries = [
        AlertDelivery(
            account_id=rule.account_id,
            event_id=event.id,
            channel=channel["type"],
            target=channel["target"],
            status="PENDING",
        )
        for channel in rule.channels
    ]
    session.add_all(deliveries)
    # Sending is outbox work of this same transaction: an alert recorded is an alert sent.
    await outbox.add(
        session,
        account_id=rule.account_id,
        kind=outbox.DELIVER_ALERT,
        items={str(d.id): {} for d in deliveries},
    )
    return event


async def evaluate(
    session: AsyncSession, *, account_id: uuid.UUID, customers: list[str], now: datetime
) -> list[AlertEvent]:
    """The rollup path: rules that can be judged mid-period, for the customers that changed.
    Percentage drops wait for the period to end (a partial week always looks like a drop)."""
    rules = [r for r in await list_rules(session, account_id=account_id) if r.enabled]
    fired: list[AlertEvent] = []
    for rule in rules:
        if rule.condition == "PERCENT_CHANGE" and Decimal(rule.threshold) < 0:
            continue
        scope = [rule.customer_id] if rule.customer_id else customers
        scope = [c for c in scope if c in customers] if rule.customer_id is None else scope
        if not scope:
            continue
        start = floor(now, Grouping(rule.range))
        end = following(start, Grouping(rule.range))
        values = await _values(session, rule, scope, start, end, now)
        previous: dict[str, Decimal] = {}
        if rule.condition == "PERCENT_CHANGE":
            before = floor(start - timedelta(seconds=1), Grouping(rule.range))
            previous = await _values(session, rule, scope, before, start, now)
        for customer, value in values.items():
            if _crossed(rule, value, previous.get(customer)):
                event = await _fire(session, rule, customer, start, value, previous.get(customer))
                if event is not None:
                    fired.append(event)
    await session.flush()
    return fired


async def evaluate_period_ends(session: AsyncSession, *, now: datetime) -> list[AlertEvent]:
    """Scheduled: percentage-change rules judged on the period that just ended, for every
    customer in scope (any account)."""
    rules = list(
        await session.scalars(
            select(AlertRule).where(
                col(AlertRule.enabled).is_(True), col(AlertRule.condition) == "PERCENT_CHANGE"
            )
        )
    )
    fired: list[AlertEvent] = []
    for rule in rules:
        grouping = Grouping(rule.range)
        end = floor(now, grouping)
        start = floor(end - timedelta(seconds=1), grouping)
        before = floor(start - timedelta(seconds=1), grouping)
        customers = (
            [rule.customer_id]
            if rule.customer_id
            else list(
                await session.scalars(
                    select(col(Customer.customer_id)).where(
                        col(Customer.account_id) == rule.account_id
                    )
                )
            )
        )
        values = await _values(session, rule, customers, start, end, now)
        previous = await _values(session, rule, customers, before, start, now)
        for customer in customers:
            value = values.get(customer, Decimal(0))
            if _crossed(rule, value, previous.get(customer)):
                event = await _fire(session, rule, customer, start, value, previous.get(customer))
                if event is not None:
                    fired.append(event)
    await session.flush()
    return fired


async def recent_events(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str | None, limit: int
) -> list[AlertEvent]:
    query = select(AlertEvent).where(col(AlertEvent.account_id) == account_id)
    if customer_id is not None:
        query = query.where(col(AlertEvent.customer_id) == customer_id)
    return list(
        await session.scalars(query.order_by(col(AlertEvent.created_at).desc()).limit(limit))
    )


async def deliveries_of(
    session: AsyncSession, *, account_id: uuid.UUID, event_ids: list[uuid.UUID]
) -> list[AlertDelivery]:
    return list(
        await session.scalars(
            select(AlertDelivery)
            .where(
                col(AlertDelivery.account_id) == account_id,
                col(AlertDelivery.event_id).in_(event_ids),
            )
            .order_by(col(AlertDelivery.created_at))
        )
    )


async def reseal_all(session: AsyncSession, *, box: SecretBox) -> int:
    """After a secret key rotation, across accounts: every stored channel secret and target
    re-encrypted under the current key (clear ones from before encryption sealed), so the old
    key can go. Returns the rows rewritten."""
    rewritten = 0
    for rule in await session.scalars(select(AlertRule)):
        rule.channels = [seal_channel(box, c) for c in rule.channels]
        rewritten += 1
    for delivery in await session.scalars(
        select(AlertDelivery).where(col(AlertDelivery.channel).in_(SEALED_CHANNELS))
    ):
        delivery.target = _reseal(box, delivery.target)
        rewritten += 1
    await session.flush()
    return rewritten
