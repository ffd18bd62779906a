"""Account webhook endpoints: what each subscribes to, the events written for them (in the
transaction of the change), and each delivery with its attempts."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, Numeric, String, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import account_key_column, new_id, timestamp_column, utcnow


def _ts_null() -> Any:
    return Column(DateTime(timezone=True), nullable=True)


class WebhookEndpoint(SQLModel, table=True):
    """A receiver of the account's events. The URL and the signing secrets are sealed."""

    __tablename__ = "webhook_endpoints"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    event_types: list[str] = Field(sa_column=Column(JSONB, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(String(500)))
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False))
    secret: str = Field(sa_column=Column(Text, nullable=False))
    # During a rotation the old secret signs too, until it expires.
    previous_secret: str | None = Field(default=None, sa_column=Column(Text))
    previous_secret_expires_at: datetime | None = Field(default=None, sa_column=_ts_null())
    # wallet.balance_low fires for this endpoint when a balance falls below this (besides the
    # wallet's own auto top-up threshold).
    balance_low_threshold: Decimal | None = Field(default=None, sa_column=Column(Numeric))
    # The first failure of the current run of failures (null while deliveries succeed).
    failing_since: datetime | None = Field(default=None, sa_column=_ts_null())
    disabled_at: datetime | None = Field(default=None, sa_column=_ts_null())
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class WebhookEvent(SQLModel, table=True):
    """One event, as sent: `data` is the affected object as GraphQL shows it, when it
    happened. `subject` names that object (throttling of invoice.updated)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("ix_webhook_events_subject", "account_id", "type", "subject", "created_at"),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    type: str = Field(sa_column=Column(String(60), nullable=False))
    subject: str | None = Field(default=None, sa_column=Column(String(300)))
    data: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class WebhookDelivery(SQLModel, table=True):
    """One event to one endpoint, tried until delivered or given up (`attempts` logs each)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_endpoint", "account_id", "endpoint_id", "created_at"),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    endpoint_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    event_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    status: str = Field(sa_column=Column(String(10), nullable=False))  # PENDING|DELIVERED|FAILED
    attempt_count: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # Each attempt: {at, statusCode, durationMs, error} (the error a class, never a body).
    attempts: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False)
    )
    last_status_code: int | None = Field(default=None, sa_column=Column(Integer))
    last_error: str | None = Field(default=None, sa_column=Column(String(100)))
    delivered_at: datetime | None = Field(default=None, sa_column=_ts_null())
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class WalletLowState(SQLModel, table=True):
    """Whether a wallet is below a threshold, so wallet.balance_low fires once per crossing."""

    __tablename__ = "wallet_low_states"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    customer_id: str = Field(sa_column=Column(String(200), primary_key=True))
    currency: str = Field(sa_column=Column(String(20), primary_key=True))
    threshold: Decimal = Field(sa_column=Column(Numeric, primary_key=True))
    below: bool = Field(sa_column=Column(Boolean, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
