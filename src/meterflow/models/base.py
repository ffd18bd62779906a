"""Shared column helpers. Every tenant table keys on (account_id, ...) so it can be distributed."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Enum, ForeignKey, func
from sqlalchemy.dialects.postgresql import UUID


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


def timestamp_column(*, nullable: bool = False, default_now: bool = True, **kw: Any) -> Any:
    return Column(
        DateTime(timezone=True),
        nullable=nullable,
        server_default=func.clock_timestamp() if default_now else None,
        **kw,
    )


def account_id_column() -> Any:
    return Column(UUID(as_uuid=True), primary_key=True, nullable=False)


def account_key_column() -> Any:
    """`account_id` as the leading key of a tenant table, deleted with its account."""
    return Column(
        UUID(as_uuid=True),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def enum_type(cls: type[enum.Enum], name: str) -> Enum:
    """A PostgreSQL enum of the members' values (what the API shows), not their names."""
    return Enum(cls, name=name, values_callable=lambda e: [m.value for m in e])
