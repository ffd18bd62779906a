from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, DateTime, ForeignKey, String
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import new_id, timestamp_column, utcnow


class Account(SQLModel, table=True):
    """A tenant. Every other row belongs to exactly one account."""

    __tablename__ = "accounts"

    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    # Customers named by an event but not yet known are created on the fly (Amberflo's default).
    auto_create_customers: bool = Field(default=True, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())


class CustomerSession(SQLModel, table=True):
    """A customer session token's record: the token itself is never stored, only a SHA-256 of
    its random id (looked up by that)."""

    __tablename__ = "customer_sessions"

    account_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    token_hash: str = Field(sa_column=Column(String(64), nullable=False, unique=True))
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
