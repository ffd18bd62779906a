"""Usage rollups: an index over raw events, never the truth (any figure must equal the same
aggregation computed from raw events). Maintained by the rollup worker."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Column, DateTime, ForeignKey, Index, Numeric, String, func
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.types import XID8


def _account_key() -> Column[uuid.UUID]:
    return Column(
        UUID(as_uuid=True),
        ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


class UsageWatermark(SQLModel, table=True):
    """Every event whose transaction id is below `xid` was in the rollups when they went by
    account (until migration 0020): the starting point of a meter with no watermark of its own
    (UsageMeterWatermark). Never written since."""

    __tablename__ = "usage_watermarks"

    account_id: uuid.UUID = Field(sa_column=_account_key())
    xid: int = Field(sa_column=Column(XID8, nullable=False))
    updated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class UsageMeterWatermark(SQLModel, table=True):
    """Every event of this meter whose transaction id is below `xid` is in the rollups. Each
    meter of an account is rolled up on its own (under its own lock), so that one busy meter
    neither waits for nor holds back the others. A meter without a row starts from its
    account's `usage_watermarks` row, where the rollup stood before it went by meter."""

    __tablename__ = "usage_meter_watermarks"

    account_id: uuid.UUID = Field(sa_column=_account_key())
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    xid: int = Field(sa_column=Column(XID8, nullable=False))
    updated_at: datetime = Field(
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=func.now())
    )


class UsageRollup(SQLModel, table=True):
    """One hour of one meter for one customer and one exact dimension set."""

    __tablename__ = "usage_rollups"
    # All customers of a meter over a time range (the primary key serves one customer's).
    __table_args__ = (Index("ix_usage_rollups_meter_hour", "account_id", "meter_id", "hour"),)

    account_id: uuid.UUID = Field(sa_column=_account_key())
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    customer_id: str = Field(sa_column=Column(String(200), primary_key=True))
    hour: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    dimensions: dict[str, str] = Field(sa_column=Column(JSONB, primary_key=True))
    sum: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))
    max: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    # The last event by time (ties: by ingestion order), for LATEST meters.
    latest_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    latest_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    latest_value: Decimal = Field(sa_column=Column(Numeric, nullable=False))


class UsageDistinctValue(SQLModel, table=True):
    """For UNIQUE_COUNT meters: each distinct dimension set seen in an hour. Counting distinct
    `value` over any range is then exact (a sum of hourly counts would not be)."""

    __tablename__ = "usage_distinct_values"
    __table_args__ = (
        Index("ix_usage_distinct_values_meter_hour", "account_id", "meter_id", "hour"),
    )

    account_id: uuid.UUID = Field(sa_column=_account_key())
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    customer_id: str = Field(sa_column=Column(String(200), primary_key=True))
    hour: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    dimensions: dict[str, str] = Field(sa_column=Column(JSONB, primary_key=True))
    value: str = Field(sa_column=Column(String(200), nullable=False))


class UsageDurationInterval(SQLModel, table=True):
    """For DURATION meters: when a resource (customer + dimension set) was on."""

    __tablename__ = "usage_duration_intervals"

    account_id: uuid.UUID = Field(sa_column=_account_key())
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    customer_id: str = Field(sa_column=Column(String(200), primary_key=True))
    dimensions: dict[str, str] = Field(sa_column=Column(JSONB, primary_key=True))
    started_at: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    stopped_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class UsageDaily(SQLModel, table=True):
    """Hourly rollups summed per customer and UTC day, dimensions collapsed: what month-long,
    all-customer queries read (sparse hourly data barely compresses; this does)."""

    __tablename__ = "usage_daily"
    __table_args__ = (Index("ix_usage_daily_meter_day", "account_id", "meter_id", "day"),)

    account_id: uuid.UUID = Field(sa_column=_account_key())
    meter_id: uuid.UUID = Field(sa_column=Column(UUID(as_uuid=True), primary_key=True))
    customer_id: str = Field(sa_column=Column(String(200), primary_key=True))
    day: datetime = Field(sa_column=Column(DateTime(timezone=True), primary_key=True))
    sum: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    count: int = Field(sa_column=Column(BigInteger, nullable=False))
    max: Decimal = Field(sa_column=Column(Numeric, nullable=False))
    latest_time: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    latest_seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    latest_value: Decimal = Field(sa_column=Column(Numeric, nullable=False))
