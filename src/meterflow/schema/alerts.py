from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import strawberry
from graphql import GraphQLError

from meterflow import models
from meterflow.schema.errors import NotFoundProblem, ValidationProblem
from meterflow.secretbox import SecretBox
from meterflow.services.alerts import shown_target
from meterflow.services.timebuckets import Grouping


@strawberry.enum
class AlertSubject(enum.Enum):
    USAGE = "USAGE"
    COST = "COST"
    BALANCE = "BALANCE"


@strawberry.enum
class AlertCondition(enum.Enum):
    GREATER_THAN = "GREATER_THAN"
    LESS_THAN = "LESS_THAN"
    PERCENT_CHANGE = "PERCENT_CHANGE"


@strawberry.enum
class AlertChannelType(enum.Enum):
    WEBHOOK = "WEBHOOK"
    SLACK = "SLACK"
    EMAIL = "EMAIL"


@strawberry.input
class AlertChannelInput:
    type: AlertChannelType
    target: str = strawberry.field(description="URL (webhook, Slack) or email address.")
    secret: str | None = strawberry.field(
        default=None,
        description="WEBHOOK: the Standard Webhooks signing secret, whsec_ followed by the "
        "base64 of 24 to 64 random bytes. Left out, meterflow generates one and shows it once "
        "as signingSecret in createAlertRule's answer.",
    )


@strawberry.input
class CreateAlertRuleInput:
    name: str
    subject: AlertSubject
    condition: AlertCondition
    threshold: Decimal = strawberry.field(description="PERCENT_CHANGE: percent; negative = drop.")
    range: Grouping
    channels: list[AlertChannelInput]
    meter_api_name: str | None = None
    customer_id: str | None = strawberry.field(
        default=None, description="Null: every customer, each judged on its own."
    )
    currency: str | None = strawberry.field(
        default=None,
        description="BALANCE only: the wallet watched, an ISO currency or a custom credit unit "
        "(e.g. CREDITS); the threshold is in it. Default: the named customer's plan currency, "
        "else the account's default plan's.",
    )


@strawberry.type
class AlertChannel:
    type: str
    target: str
    signing_secret: str | None = strawberry.field(
        default=None,
        description="WEBHOOK: the Standard Webhooks secret (whsec_...) that signs its "
        "deliveries (webhook-id, webhook-timestamp, webhook-signature headers), given or "
        "generated. Shown once, in createAlertRule's answer: store it now. Null everywhere "
        "else (alertRules, deleteAlertRule) and for SLACK and EMAIL.",
    )


@strawberry.type
class AlertRule:
    id: strawberry.ID
    name: str
    subject: str
    condition: str
    threshold: Decimal
    range: str
    customer_id: str | None
    currency: str | None = strawberry.field(
        description="BALANCE: the wallet watched (the threshold's unit). Null otherwise."
    )
    channels: list[AlertChannel]
    enabled: bool
    created_at: datetime

    @classmethod
    def from_model(
        cls, row: models.AlertRule, box: SecretBox, *, reveal_secrets: bool = False
    ) -> AlertRule:
        """`reveal_secrets`: for createAlertRule's answer only, the one time a WEBHOOK
        channel's signing secret is shown."""
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            subject=row.subject,
            condition=row.condition,
            threshold=Decimal(row.threshold),
            range=row.range,
            customer_id=row.customer_id,
            currency=row.currency,
            channels=[
                AlertChannel(
                    type=c["type"],
                    target=shown_target(box, c["target"]),
                    signing_secret=box.open(c["secret"])
                    if reveal_secrets and c["type"] == "WEBHOOK" and c.get("secret")
                    else None,
                )
                for c in row.channels
            ],
            enabled=row.enabled,
            created_at=row.created_at,
        )


@strawberry.type
class AlertDelivery:
    channel: str
    target: str
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None = strawberry.field(
        description="Why the last attempt failed, as a short class: timeout, connect_error, "
        "tls_error, http_<status>, redirect, blocked_address, dns_error, invalid_target... "
        "Never the target's answer."
    )
    delivered_at: datetime | None


@strawberry.type
class AlertEvent:
    id: strawberry.ID
    rule_id: strawberry.ID
    name: str = strawberry.field(description="The rule's name.")
    customer_id: str
    period_start: datetime
    value: Decimal
    currency: str | None = strawberry.field(
        description="The unit of value when it is money: the invoice's (COST) or the "
        "wallet's (BALANCE). Null for usage."
    )
    message: str
    created_at: datetime
    fired_at: datetime
    # None when the caller may not see deliveries (a customer session token).
    visible_deliveries: strawberry.Private[list[AlertDelivery] | None]
    # The rule, for admin keys (its channels are credentials); None for a session token.
    visible_rule: strawberry.Private[AlertRule | None] = None

    @strawberry.field(
        description="The rule that fired, for admin keys (read with the page's events, in the "
        "same query); a customer session token gets FORBIDDEN here."
    )
    def rule(self) -> AlertRule | None:
        if self.visible_deliveries is None:
            raise GraphQLError(
                "a customer session token sees the alert itself only, not its rule",
                extensions={"code": "FORBIDDEN"},
            )
        return self.visible_rule

    @strawberry.field(
        description="The delivery log, for admin keys: targets are credentials (a Slack URL), "
        "so a customer session token gets FORBIDDEN here and sees the alert itself only."
    )
    def deliveries(self) -> list[AlertDelivery] | None:
        if self.visible_deliveries is None:
            raise GraphQLError(
                "a customer session token sees the alert itself only, not its deliveries",
                extensions={"code": "FORBIDDEN"},
            )
        return self.visible_deliveries

    @classmethod
    def from_model(
        cls,
        row: models.AlertEvent,
        deliveries: list[models.AlertDelivery] | None,
        rule_name: str,
        box: SecretBox,
        rule: models.AlertRule | None = None,
    ) -> AlertEvent:
        """`deliveries` None: the caller may not see them, nor the rule (not loaded either)."""
        return cls(
            visible_rule=AlertRule.from_model(rule, box) if rule is not None else None,
            id=strawberry.ID(str(row.id)),
            rule_id=strawberry.ID(str(row.rule_id)),
            name=rule_name,
            fired_at=row.created_at,
            customer_id=row.customer_id,
            period_start=row.period_start,
            value=Decimal(row.value),
            currency=row.currency,
            message=row.message,
            created_at=row.created_at,
            visible_deliveries=None
            if deliveries is None
            else [
                AlertDelivery(
                    channel=d.channel,
                    target=shown_target(box, d.target),
                    status=d.status,
                    attempts=d.attempts,
                    last_status_code=d.last_status_code,
                    last_error=d.last_error,
                    delivered_at=d.delivered_at,
                )
                for d in deliveries
                if d.event_id == row.id
            ],
        )


@strawberry.type(description="Events named a meter or customer that does not exist.")
class Notice:
    kind: str = strawberry.field(description="UNDEFINED_METER or UNDEFINED_CUSTOMER.")
    subject: str = strawberry.field(description="The meterApiName or customerId named.")
    count: int
    first_seen_at: datetime
    last_seen_at: datetime


CreateAlertRuleResult = Annotated[
    AlertRule | ValidationProblem | NotFoundProblem, strawberry.union("CreateAlertRuleResult")
]
AlertRuleResult = Annotated[AlertRule | NotFoundProblem, strawberry.union("AlertRuleResult")]
