"""Pricing plans, assignments, invoices and prepaid credits."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import account_key_column, enum_type, new_id, utcnow


class PlanStatus(enum.StrEnum):
    DRAFT = "DRAFT"
    ACTIVE = "ACTIVE"
    DEPRECATED = "DEPRECATED"


class PeriodInterval(enum.StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"
    YEAR = "YEAR"


class InvoiceStatus(enum.StrEnum):
    OPEN = "OPEN"
    GRACE = "GRACE"
    FINALIZED = "FINALIZED"
    PAID = "PAID"
    VOID = "VOID"
    UNCOLLECTIBLE = "UNCOLLECTIBLE"


class LedgerKind(enum.StrEnum):
    GRANT = "GRANT"
    CONSUMPTION = "CONSUMPTION"  # one per (invoice, grant): minus what the invoice holds of it
    EXPIRY = "EXPIRY"


def _ts(nullable: bool = False, now: bool = False) -> Any:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.clock_timestamp() if now else None,
    )


class PricingPlan(SQLModel, table=True):
    __tablename__ = "pricing_plans"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    period_interval: PeriodInterval = Field(
        sa_column=Column(enum_type(PeriodInterval, "period_interval"), nullable=False)
    )
    period_count: int = Field(sa_column=Column(Integer, nullable=False))
    status: PlanStatus = Field(
        sa_column=Column(enum_type(PlanStatus, "plan_status"), nullable=False)
    )
    fees: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    discounts: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    minimum_spend: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    free_tier_amount: Decimal | None = Field(default=None, sa_column=Column(Numeric, nullable=True))
    grace_period_hours: int = Field(
        sa_column=Column(Integer, nullable=False, server_default=text("0"))
    )
    is_default: bool = Field(
        sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))
    activated_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    deprecated_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class PlanItem(SQLModel, table=True):
    """One billable meter of a plan, with its price model (JSON, as the API takes it)."""

    __tablename__ = "plan_items"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    plan_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    position: int = Field(sa_column=Column(Integer, nullable=False))
    price_model: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    included_units: Decimal = Field(sa_column=Column(Numeric, nullable=False))


class PlanAssignment(SQLModel, table=True):
    """A customer on a plan from `start_time` until `end_time` (open-ended when null)."""

    __tablename__ = "plan_assignments"
    __table_args__ = (
        Index("ix_plan_assignments_customer", "account_id", "customer_id", "start_time"),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    plan_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    start_time: datetime = Field(sa_column=_ts())
    end_time: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "customer_id", "period_start", name="uq_invoices_customer_period"
        ),
        Index("ix_invoices_status_end", "status", "period_end"),
        # The invoices list across customers, both directions, keyset cursors included:
        # newest period first (and a periodStart range); by TOTAL, and by TOTAL within a status
        # (rare statuses would otherwise walk most of ix_invoices_total).
        Index("ix_invoices_period", "account_id", "period_start", "id"),
        Index("ix_invoices_total", "account_id", "total", "id"),
        Index("ix_invoices_status_total", "account_id", "status", "total", "id"),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    plan_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    assignment_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    period_start: datetime = Field(sa_column=_ts())
    period_end: datetime = Field(sa_column=_ts())
    status: InvoiceStatus = Field(
        sa_column=Column(enum_type(InvoiceStatus, "invoice_status"), nullable=False)
    )
    currency: str = Field(sa_column=Column(String(3), nullable=False))
    lines: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    discounts: list[dict[str, Any]] = Field(sa_column=Column(JSONB, nullable=False))
    subtotal: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    discount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    credits_applied: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    total: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    version: int = Field(sa_column=Column(BigInteger, nullable=False, server_default=text("0")))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))
    finalized_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))


class CreditGrant(SQLModel, table=True):
    __tablename__ = "credit_grants"
    __table_args__ = (Index("ix_credit_grants_wallet", "account_id", "customer_id", "currency"),)

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    # The wallet's unit: an ISO currency, or a custom one such as "CREDITS".
    currency: str = Field(sa_column=Column(String(20), nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    remaining: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    # What one unit is worth in `money_currency` (1 for plain money credits).
    ratio: Decimal = Field(
        default=Decimal(1), sa_column=Column(Numeric, nullable=False, server_default=text("1"))
    )
    money_currency: str = Field(sa_column=Column(String(3), nullable=False))
    priority: int = Field(sa_column=Column(Integer, nullable=False))
    purchased: bool = Field(sa_column=Column(Boolean, nullable=False))
    reason: str | None = Field(default=None, sa_column=Column(String(500), nullable=True))
    expires_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    expired_at: datetime | None = Field(default=None, sa_column=_ts(nullable=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))


class CreditAllocation(SQLModel, table=True):
    """How much of a grant an invoice currently draws on."""

    __tablename__ = "credit_allocations"

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    invoice_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    grant_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))


class WalletLedgerEntry(SQLModel, table=True):
    """One line of a wallet's statement: a grant, an invoice's consumption of one grant, or an
    expiry. A CONSUMPTION line is unique per (invoice, grant) and moves in place as its invoice
    is re-rated (`amount`, `updated_at`); the running balance is computed when read."""

    __tablename__ = "wallet_ledger"
    __table_args__ = (
        Index("ix_wallet_ledger_wallet", "account_id", "customer_id", "currency", "seq"),
        # Grant and expiry lines carry no invoice: NULLs never collide, so only consumption
        # lines are constrained, and concurrent re-rates upsert one line instead of two.
        UniqueConstraint(
            "account_id", "invoice_id", "grant_id", name="uq_wallet_ledger_invoice_grant"
        ),
    )

    account_id: uuid.UUID = Field(sa_column=account_key_column())
    seq: int | None = Field(
        default=None, sa_column=Column(BigInteger, primary_key=True, autoincrement=True)
    )
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    currency: str = Field(sa_column=Column(String(20), nullable=False))
    kind: LedgerKind = Field(sa_column=Column(enum_type(LedgerKind, "ledger_kind"), nullable=False))
    amount: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    grant_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(UUID(as_uuid=True), nullable=True)
    )
    invoice_id: uuid.UUID | None = Field(
        default=None, sa_column=Column(UUID(as_uuid=True), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_ts(now=True))
