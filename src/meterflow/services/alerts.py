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

from meterflow import netguard, webhook_signing
from meterflow.errors import NotFoundError, ValidationError
from meterflow.models import (
    AlertDelivery,
    AlertEvent,
    AlertRule,
)
from meterflow.secretbox import SecretBox, UnreadableSecretError
from meterflow.services import (
    alert_checks,
    alert_figures,
    meters,
    outbox,
    validation,
    webhook_events,
    webhook_payloads,
)
from meterflow.services.alert_figures import Figure
from meterflow.services.timebuckets import Grouping, floor, following

SUBJECTS = ("USAGE", "COST", "BALANCE")
CONDITIONS = ("GREATER_THAN", "LESS_THAN", "PERCENT_CHANGE")
CHANNELS = ("WEBHOOK", "SLACK", "EMAIL")
RANGES = tuple(g.value for g in Grouping)
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
    currency: str | None = None  # BALANCE: the wallet watched


def _signing_secret(given: Any, *, name: str, index: int) -> str:
    """A WEBHOOK channel's Standard Webhooks secret: the one given if it is a valid whsec_
    secret, a new one if none was given. Never echoed in the error (it is a credential)."""
    if given is None:
        return webhook_signing.new_secret()
    if not isinstance(given, str) or not webhook_signing.is_valid_secret(given):
        raise ValidationError(
            f"rule {name!r}: channels[{index}] (WEBHOOK) secret must be a Standard Webhooks "
            f"secret: whsec_ followed by the base64 of {webhook_signing.MIN_KEY_BYTES} to "
            f"{webhook_signing.MAX_KEY_BYTES} random bytes (leave it out and one is generated, "
            "shown once in the answer as signingSecret)",
            field=f"channels[{index}].secret",
        )
    return given


async def create_rule(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    spec: RuleSpec,
    now: datetime,
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
    if spec.range not in RANGES:
        raise ValidationError(f"range must be one of {RANGES}", field="range")
    if not spec.threshold.is_finite():
        raise ValidationError("threshold must be a finite number", field="threshold")
    if spec.condition == "PERCENT_CHANGE":
        await alert_checks.check_comparable(
            session,
            account_id=account_id,
            subject=spec.subject,
            range=spec.range,
            customer_id=spec.customer_id,
            now=now,
        )
    currency = None
    if spec.subject == "BALANCE":
        currency = await alert_checks.wallet_currency(
            session,
            account_id=account_id,
            currency=spec.currency,
            customer_id=spec.customer_id,
            now=now,
        )
    elif spec.currency is not None:
        raise ValidationError(
            "currency is for BALANCE rules (the wallet watched); a COST is in its invoice's "
            "currency",
            field="currency",
        )
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
        secret = channel.get("secret")
        if kind == "WEBHOOK":
            secret = _signing_secret(secret, name=name, index=i)
        channels.append(seal_channel(box, {"type": kind, "target": target, "secret": secret}))
    rule = AlertRule(
        account_id=account_id,
        name=name,
        subject=spec.subject,
        meter_id=meter_id,
        condition=spec.condition,
        threshold=spec.threshold,
        range=spec.range,
        customer_id=spec.customer_id,
        currency=currency,
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


async def _fire(
    session: AsyncSession,
    rule: AlertRule,
    customer: str,
    period: datetime,
    figure: Figure,
    previous: Figure | None,
) -> AlertEvent | None:
    event = await session.scalar(
        insert(AlertEvent)
        .values(
            account_id=rule.account_id,
            id=uuid.uuid4(),
            rule_id=rule.id,
            customer_id=customer,
            period_start=period,
            value=figure.value,
            currency=figure.currency,
            message=alert_figures.message(rule, customer, figure, previous),
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
    await session.flush()
    await webhook_events.notify(
        session,
        account_id=rule.account_id,
        event_type="alert.fired",
        build=lambda: [({"alert": webhook_payloads.alert(event, rule)}, str(rule.id))],
        now=event.created_at,
    )
    return event


def _judged(rule: AlertRule) -> bool:
    """False for rules create_rule refuses that older rows may still hold (migration 0012
    disables them): a BALANCE has no previous period's figure, nor does an hourly COST."""
    return not (
        rule.condition == "PERCENT_CHANGE"
        and (rule.subject == "BALANCE" or (rule.subject == "COST" and rule.range == "HOUR"))
    )


async def _judge(
    session: AsyncSession,
    rule: AlertRule,
    customers: list[str] | None,
    start: datetime,
    now: datetime,
) -> list[AlertEvent]:
    """Judge a rule on the period starting at `start`, firing at most once per customer."""
    grouping = Grouping(rule.range)
    end = following(start, grouping)
    figures = await alert_figures.figures(session, rule, customers, start, end, now)
    previous: dict[str, Figure] = {}
    if rule.condition == "PERCENT_CHANGE":
        before = floor(start - timedelta(seconds=1), grouping)
        previous = await alert_figures.figures(session, rule, customers, before, start, now)
    fired = []
    for customer, figure in sorted(figures.items()):
        earlier = previous.get(customer)
        if alert_figures.crossed(rule, figure.value, earlier.value if earlier else None):
            event = await _fire(session, rule, customer, start, figure, earlier)
            if event is not None:
                fired.append(event)
    return fired


async def evaluate(
    session: AsyncSession, *, account_id: uuid.UUID, customers: list[str], now: datetime
) -> list[AlertEvent]:
    """The rollup path: rules that can be judged mid-period, for the customers that changed.
    Percentage drops wait for the period to end (a partial week always looks like a drop)."""
    rules = [r for r in await list_rules(session, account_id=account_id) if r.enabled]
    changed = sorted(set(customers))
    touched = set(changed)
    fired: list[AlertEvent] = []
    for rule in rules:
        if not _judged(rule):
            continue
        if rule.condition == "PERCENT_CHANGE" and Decimal(rule.threshold) < 0:
            continue
        if rule.customer_id is None:
            scope = changed
        else:
            scope = [rule.customer_id] if rule.customer_id in touched else []
        if not scope:
            continue
        start = floor(now, Grouping(rule.range))
        fired += await _judge(session, rule, scope, start, now)
    await session.flush()
    return fired


async def accounts_with_period_rules(session: AsyncSession) -> list[uuid.UUID]:
    """Accounts that have percentage-change rules to judge when a period ends."""
    return list(
        await session.scalars(
            select(col(AlertRule.account_id))
            .where(col(AlertRule.enabled).is_(True), col(AlertRule.condition) == "PERCENT_CHANGE")
            .distinct()
            .order_by(col(AlertRule.account_id))
        )
    )


async def evaluate_period_ends(
    session: AsyncSession, *, account_id: uuid.UUID, now: datetime
) -> list[AlertEvent]:
    """Scheduled, one account at a time: its percentage-change rules judged on the period that
    just ended, for every customer in scope."""
    rules = list(
        await session.scalars(
            select(AlertRule)
            .where(
                col(AlertRule.account_id) == account_id,
                col(AlertRule.enabled).is_(True),
                col(AlertRule.condition) == "PERCENT_CHANGE",
            )
            .order_by(col(AlertRule.created_at))
        )
    )
    fired: list[AlertEvent] = []
    for rule in rules:
        if not _judged(rule):
            continue
        grouping = Grouping(rule.range)
        start = floor(floor(now, grouping) - timedelta(seconds=1), grouping)  # just ended
        scope = [rule.customer_id] if rule.customer_id else None
        fired += await _judge(session, rule, scope, start, now)
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
