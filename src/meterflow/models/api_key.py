from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, Enum, ForeignKey, Index, String
from sqlalchemy.dialects.postgresql import UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import new_id, timestamp_column, utcnow


class ApiKeyScope(enum.StrEnum):
    ADMIN = "admin"  # everything in the account
    INGEST = "ingest"  # write meter events only: safe to ship inside a producer


class ApiKey(SQLModel, table=True):
    """An account's API key. Only its SHA-256 is kept; the key itself is shown once."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("uq_api_keys_key_hash", "key_hash", unique=True),)

    account_id: uuid.UUID = Field(
        sa_column=Column(
            UUID(as_uuid=True),
            ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        )
    )
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    name: str = Field(sa_column=Column(String(200), nullable=False))
    # The first characters of the key, so a person can tell keys apart in a list.
    prefix: str = Field(sa_column=Column(String(16), nullable=False))
    key_hash: str = Field(sa_column=Column(String(64), nullable=False))
    scope: ApiKeyScope = Field(
        sa_column=Column(
            Enum(ApiKeyScope, name="api_key_scope", values_callable=lambda e: [m.value for m in e]),
            nullable=False,
        )
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    revoked_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
