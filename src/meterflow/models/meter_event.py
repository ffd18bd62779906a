"""Meter events: append-only, partitioned by month of event time, with a dedup identity table."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    Sequence,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.types import XID8

# Ingestion order across the whole service; the By Event view pages on it.
EVENT_SEQUENCE = Sequence("meter_event_seq", metadata=SQLModel.metadata)

UNIQUE_ID_MAX = 200
IDENTITY_MAX = 220  # "u:" + a uniqueId, or "h:" + a SHA-256 hex digest


class MeterEvent(SQLModel, table=True):
    """One accepted event, stored once, as ingested. Never updated except to cancel it."""

    __tablename__ = "meter_events"
    __table_args__ = (
        PrimaryKeyConstraint("account_id", "event_time", "seq", name="pk_meter_events"),
        # By Event view: ingestion order within an account.
        Index("ix_meter_events_account_seq", "account_id", "seq"),
        # Rollup worker: what committed since a meter's watermark (a transaction id).
        Index("ix_meter_events_account_meter_xid", "account_id", "meter_id", "ingest_xid"),
        # Rollup worker: cancellations since the watermark (rare, so a partial index).
        Index(
            "ix_meter_events_account_cancel_xid",
            "account_id",
            "cancel_xid",
            postgresql_where=text("cancel_xid IS NOT NULL"),
        ),
        {"postgresql_partition_by": "RANGE (event_time)"},
    )

    # No foreign key to accounts: its per-row check was a third of the ingest write (migration
    # 0019); a statement trigger on accounts deletes an account's events instead.
    account_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    event_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    seq: int = Field(
        sa_column=Column(BigInteger, nullable=False, server_default=EVENT_SEQUENCE.next_value())
    )
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), nullable=False))
    customer_id: str = Field(sa_column=Column(String(200), nullable=False))
    value: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    unique_id: str | None = Field(default=None, sa_column=Column(String(UNIQUE_ID_MAX)))
    identity: str = Field(sa_column=Column(String(IDENTITY_MAX), nullable=False))
    dimensions: dict[str, str] = Field(
        default_factory=dict,
        sa_column=Column(JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    )
    # The record exactly as the producer sent it (json keeps the text, jsonb would normalise it).
    raw: Any = Field(sa_column=Column(JSON, nullable=False))
    ingested_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )
    # xid8 of the inserting transaction: the rollup watermark can never skip an event that
    # commits late (a sequence number would: commit order is not sequence order).
    ingest_xid: int = Field(
        sa_column=Column(
            "ingest_xid", XID8, nullable=False, server_default=text("pg_current_xact_id()")
        )
    )
    cancelled_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    cancel_xid: int | None = Field(default=None, sa_column=Column(XID8, nullable=True))


class MeterEventIdentity(SQLModel, table=True):
    """One row per event identity ever accepted: the dedup index, across all partitions.

    (A unique index on the partitioned table would have to include event_time, and the same
    uniqueId sent with another time must still be a duplicate.)
    """

    __tablename__ = "meter_event_identities"

    account_id: uuid.UUID = Field(
        sa_column=Column(UUID(as_uuid=True), primary_key=True, nullable=False)  # see MeterEvent
    )
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    identity: str = Field(sa_column=Column(String(IDENTITY_MAX), primary_key=True))
    event_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
