"""Collecting money through Stripe: each account's connection, each invoice's payment, prepaid
top-ups and their automatic rule, and the Stripe events already handled."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import account_key_column, enum_type, new_id, timestamp_column, utcnow


class CollectionMethod(enum.StrEnum):
    CHARGE_AUTOMATICALLY = "CHARGE_AUTOMATICALLY"
    SEND_INVOICE = "SEND_INVOICE"


class PaymentStatus(enum.StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    FAILED = "FAILED"
    UNCOLLECTIBLE = "UNCOLLECTIBLE"
    VOID = "VOID"


class TopUpStatus(enum.StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    FAILED = "FAILED"
    VOID = "VOID"


def _ts_null() -> Any:
    return Column(DateTime(timezone=True), nullable=True)


class StripeConnection(SQLModel, table=True):
    """An account's own Stripe account. Both keys are sealed at rest (secretbox)."""

    __tablename__ = "stripe_connections"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    secret_key: str = Field(sa_column=Column(Text, nullable=False))
    webhook_secret: str = Field(sa_column=Column(Text, nullable=False))
    key_last4: str = Field(sa_column=Column(String(4), nullable=False))
    collection_method: CollectionMethod = Field(
        sa_column=Column(enum_type(CollectionMethod, "collection_method"), nullable=False)
    )
    days_until_due: int = Field(sa_column=Column(Integer, nullable=False))
    connected_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class InvoicePayment(SQLModel, table=True):
    """How a finalized invoice is being collected. The Stripe ids are kept as each step
    succeeds, so a retry after a crash resumes (and its idempotency keys make a repeated step
    a replay at Stripe, never a second object)."""

    __tablename__ = "invoice_payments"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    invoice_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    provider: str = Field(sa_column=Column(String(20), nullable=False))
    status: PaymentStatus = Field(
        sa_column=Column(enum_type(PaymentStatus, "payment_status"), nullable=False)
    )
    external_id: str | None = Field(default=None, sa_column=Column(String(255)))
    external_customer_id: str | None = Field(default=None, sa_column=Column(String(255)))
    collection_method: CollectionMethod | None = Field(
        default=None, sa_column=Column(enum_type(CollectionMethod, "collection_method"))
    )
    # Set once Stripe finalized its invoice: the sync is over.
    synced_at: datetime | None = Field(default=None, sa_column=_ts_null())
    hosted_invoice_url: str | None = Field(default=None, sa_column=Column(Text))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class TopUp(SQLModel, table=True):
    """A purchase of prepaid credits, paid through a Stripe invoice; granted once paid."""

    __tablename__ = "top_ups"
    __table_args__ = (
        # At most one pending top-up per wallet: concurrent re-rates cannot start two.
        Index(
            "uq_top_ups_pending",
            "account_id",
            "customer_id",
            "currency",
            unique=True,
            postgresql_where=text("status = 'PENDING'"),
        ),
        Index("ix_top_ups_customer", "account_id", "customer_id", "created_at"),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    automatic: bool = Field(sa_column=Column(Boolean, nullable=False))
    status: TopUpStatus = Field(
        sa_column=Column(enum_type(TopUpStatus, "top_up_status"), nullable=False)
    )
    external_id: str | None = Field(default=None, sa_column=Column(String(255)))
    external_customer_id: str | None = Field(default=None, sa_column=Column(String(255)))
    collection_method: CollectionMethod | None = Field(
        default=None, sa_column=Column(enum_type(CollectionMethod, "collection_method"))
    )
    synced_at: datetime | None = Field(default=None, sa_column=_ts_null())
    hosted_invoice_url: str | None = Field(default=None, sa_column=Column(Text))
    grant_id: uuid.UUID | None = Field(default=None, sa_column=Column(UUID(as_uuid=True)))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    paid_at: datetime | None = Field(default=None, sa_column=_ts_null())
    failed_at: datetime | None = Field(default=None, sa_column=_ts_null())


class AutoTopUp(SQLModel, table=True):
    """When a wallet's balance falls below `threshold`, buy `amount` more (in its currency)."""

    __tablename__ = "auto_top_ups"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    customer_id: str = Field(sa_column=Column(String(200), primary_key=True))
    currency: str = Field(sa_column=Column(String(3), primary_key=True))
    threshold: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    enabled: bool = Field(sa_column=Column(Boolean, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class StripeEvent(SQLModel, table=True):
    """A Stripe event handled: its id is what makes a redelivery change nothing."""

    __tablename__ = "stripe_events"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    event_id: str = Field(sa_column=Column(String(255), primary_key=True))
    type: str = Field(sa_column=Column(String(100), nullable=False))
    received_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
