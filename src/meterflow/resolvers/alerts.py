from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from decimal import Decimal

import strawberry
from sqlalchemy import select
from sqlmodel import col

from meterflow.errors import NotFoundError
from meterflow.models import IngestNotice
from meterflow.pubsub import channel
from meterflow.resolvers.base import (
    Info,
    mutate,
    require_admin,
    require_reader,
    secret_box,
    token_customer,
)
from meterflow.resolvers.realtime import follow
from meterflow.schema.alerts import (
    AlertEvent,
    AlertRule,
    AlertRuleResult,
    CreateAlertRuleInput,
    CreateAlertRuleResult,
    Notice,
)
from meterflow.services import alerts


def _rule_id(value: strawberry.ID) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFoundError(f"no alert rule {value}") from exc


async def _events(
    info: Info, account_id: uuid.UUID, customer_id: str | None, limit: int
) -> list[AlertEvent]:
    """Alerts for `require_reader`'s caller. Deliveries only for admin keys: their targets are
    credentials (a Slack URL) and their errors are the operator's business."""
    async with info.context.session_factory() as session:
        rows = await alerts.recent_events(
            session, account_id=account_id, customer_id=customer_id, limit=limit
        )
        deliveries = (
            None
            if token_customer(info) is not None
            else await alerts.deliveries_of(
                session, account_id=account_id, event_ids=[r.id for r in rows]
            )
        )
        # Every rule of the account in one statement: names for all, the rule for admin keys.
        rules = {r.id: r for r in await alerts.list_rules(session, account_id=account_id)}
    box = secret_box(info)
    return [
        AlertEvent.from_model(
            row,
            deliveries,
            rules[row.rule_id].name if row.rule_id in rules else "",
            box,
            rules.get(row.rule_id) if deliveries is not None else None,
        )
        for row in rows
    ]


@strawberry.type
class AlertQueries:
    @strawberry.field
    async def alert_rules(self, info: Info) -> list[AlertRule]:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            rows = await alerts.list_rules(session, account_id=principal.account_id)
        return [AlertRule.from_model(r, secret_box(info)) for r in rows]

    @strawberry.field(description="Undefined meters and customers that events named.")
    async def notices(self, info: Info) -> list[Notice]:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            rows = await session.scalars(
                select(IngestNotice)
                .where(col(IngestNotice.account_id) == principal.account_id)
                .order_by(col(IngestNotice.last_seen_at).desc())
            )
            return [
                Notice(
                    kind=r.kind,
                    subject=r.subject,
                    count=r.count,
                    first_seen_at=r.first_seen_at,
                    last_seen_at=r.last_seen_at,
                )
                for r in rows
            ]

    @strawberry.field(description="Alerts fired, newest first, with their delivery log.")
    async def alert_events(
        self, info: Info, customer_id: str | None = None, first: int = 50
    ) -> list[AlertEvent]:
        customer_id = customer_id if customer_id is not None else token_customer(info)
        account_id = require_reader(info, customer_id)
        return await _events(info, account_id, customer_id, min(max(first, 1), 500))


@strawberry.type
class AlertMutations:
    @strawberry.mutation
    async def create_alert_rule(
        self, info: Info, input: CreateAlertRuleInput
    ) -> CreateAlertRuleResult:
        spec = alerts.RuleSpec(
            name=input.name,
            subject=input.subject.value,
            condition=input.condition.value,
            threshold=Decimal(input.threshold),
            range=input.range.value,
            meter_api_name=input.meter_api_name,
            customer_id=input.customer_id,
            currency=input.currency,
            channels=tuple(
                {"type": c.type.value, "target": c.target, "secret": c.secret}
                for c in input.channels
            ),
        )
        return await mutate(
            info,
            lambda session, principal: alerts.create_rule(
                session,
                account_id=principal.account_id,
                spec=spec,
                now=datetime.now(UTC),
                allow_private_targets=info.context.allow_private_webhook_targets,
                box=secret_box(info),
            ),
            # The one answer that shows WEBHOOK channels' signing secrets.
            lambda rule: AlertRule.from_model(rule, secret_box(info), reveal_secrets=True),
        )

    @strawberry.mutation(description="Disable a rule (its history stays).")
    async def delete_alert_rule(self, info: Info, id: strawberry.ID) -> AlertRuleResult:
        return await mutate(
            info,
            lambda session, principal: alerts.delete_rule(
                session, account_id=principal.account_id, rule_id=_rule_id(id), box=secret_box(info)
            ),
            lambda rule: AlertRule.from_model(rule, secret_box(info)),
        )


@strawberry.type
class AlertSubscriptions:
    @strawberry.subscription(description="Alerts as they fire (the latest one first).")
    async def alert_fired(
        self, info: Info, customer_id: str | None = None
    ) -> AsyncGenerator[AlertEvent, None]:
        customer_id = customer_id if customer_id is not None else token_customer(info)
        account_id = require_reader(info, customer_id)
        seen: set[str] = set()

        async def read() -> list[AlertEvent]:
            return [
                e for e in await _events(info, account_id, customer_id, 20) if str(e.id) not in seen
            ]

        first = True
        topic = channel(account_id, "alert", customer_id or "*")
        async for batch in follow(info, [topic], read, lambda a, b: False):
            ordered = list(reversed(batch))
            if first:
                ordered, first = ordered[-1:], False  # the current state: the latest alert
                seen.update(str(e.id) for e in batch)
            for event in ordered:
                seen.add(str(event.id))
                yield event
