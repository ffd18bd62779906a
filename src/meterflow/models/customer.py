from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, String, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import new_id, timestamp_column, utcnow

CUSTOMER_ID_MAX = 200
NAME_MAX = 200
EMAIL_MAX = 320


class Customer(SQLModel, table=True):
    """A customer of the account. `customer_id` is the account's own id for it (Amberflo's)."""

    __tablename__ = "customers"
    __table_args__ = (
        UniqueConstraint("account_id", "customer_id", name="uq_customers_account_customer_id"),
        # The customers list in its default order (and its keyset cursor), both directions.
        Index("ix_customers_created", "account_id", "created_at", "id"),
    )

    account_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    customer_id: str = Field(sa_column=Column(String(CUSTOMER_ID_MAX), nullable=False))
    name: str = Field(sa_column=Column(String(NAME_MAX), nullable=False))
    email: str | None = Field(default=None, sa_column=Column(String(EMAIL_MAX), nullable=True))
    traits: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    enabled: bool = Field(default=True, nullable=False)
    # The customer's Stripe Customer: created on first need, or set by the operator.
    stripe_customer_id: str | None = Field(default=None, sa_column=Column(String(255)))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


# The customers list by NAME (case-insensitive), both directions: an expression index, so it is
# declared on the columns once the table exists.
Index(
    "ix_customers_name",
    Customer.account_id,  # type: ignore[arg-type]
    func.lower(Customer.name),
    Customer.id,  # type: ignore[arg-type]
)
