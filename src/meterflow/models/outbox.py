"""Outbox rows: work that must happen, committed with the change that causes it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import new_id, timestamp_column, utcnow


class OutboxItem(SQLModel, table=True):
    """One piece of pending work. Only pending work is kept: the job that completes a row
    deletes it. (account, kind, key) coalesces: adding the same work again bumps `version`
    instead of adding a row, so a job that started before the bump leaves the row to run
    again."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("account_id", "kind", "key", name="uq_outbox_key"),
        Index("ix_outbox_available_at", "available_at"),
        Index(
            "ix_outbox_claimed_by",
            "claimed_by",
            postgresql_where=text("claimed_by IS NOT NULL"),
        ),
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
    kind: str = Field(sa_column=Column(String(40), nullable=False))
    key: str = Field(sa_column=Column(String(300), nullable=False))
    payload: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    version: int = Field(default=1, sa_column=Column(Integer, nullable=False))
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False))
    # When the work may run next: now for new work, later for a retry, and a lease while a
    # worker holds it (so no sweep hands it out twice).
    available_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    claimed_by: str | None = Field(default=None, sa_column=Column(String(200)))
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
