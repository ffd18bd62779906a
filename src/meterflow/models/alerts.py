"""Alert rules, the alerts they fire, and the delivery of each alert to each channel."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import account_key_column, new_id, utcnow


def _ts(nullable: bool = False) -> Any:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else func.clock_timestamp(),
    )


class AlertRule(SQLModel, table=True):
    __tablename__ = "alert_rules"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    subject: str = Field(sa_column=Column(String(20), nullable=False))  # USAGE | COST | BALANCE
    meter_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    condition: str = Field(sa_column=Column(String(20), nullable=False))
    threshold: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    range: str = Field(sa_column=Column(String(10), nullable=False))  # HOUR | DAY | WEEK | MONTH
    customer_id: str | None = Field(default=None, sa_column=Column(String(200)))
    # BALANCE: the wallet watched (an ISO currency or a custom unit such as CREDITS); the
    # threshold is in it. Null for USAGE and COST (a cost is in its invoice's currency).
    currency: str | None = Field(default=None, sa_column=Column(String(20)))
    channels: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    enabled: bool = Field(default=True, sa_column=Column(Boolean, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class AlertEvent(SQLModel, table=True):
    """A rule fired for a customer in a period: at most once (the unique key is the no-storm
    rule)."""

    __tablename__ = "alert_events"
    __table_args__ = (
        UniqueConstraint(
            "account_id",
            "rule_id",
            "customer_id",
            "period_start",
            name="uq_alert_events_once_per_period",
        ),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    rule_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    period_start: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    value: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    # The unit of `value` when it is money: the invoice's currency (COST) or the wallet's
    # (BALANCE). Null for usage.
    currency: str | None = Field(default=None, sa_column=Column(String(20)))
    message: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class AlertDelivery(SQLModel, table=True):
    """One alert to one channel: the delivery log, attempt by attempt."""

    __tablename__ = "alert_deliveries"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    channel: str = Field(sa_column=Column(String(10), nullable=False))  # WEBHOOK | SLACK | EMAIL
    # Text: a sealed (encrypted) webhook or Slack URL is ~1.4 times the URL's length.
    target: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False))  # PENDING|DELIVERED|FAILED
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_status_code: int | None = Field(default=None, sa_column=Column(Integer))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    delivered_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts())


class IngestNotice(SQLModel, table=True):
    """Events named a meter or a customer that does not exist: what, how often, since when."""

    __tablename__ = "ingest_notices"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    kind: str = Field(sa_column=Column(String(30), primary_key=True))  # UNDEFINED_METER | ...
    subject: str = Field(sa_column=Column(String(200), primary_key=True))
    count: int = Field(sa_column=Column(Integer, nullable=False))
    first_seen_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
    last_seen_at: datetime = Field(default_factory=utcnow, sa_column=_ts())
