from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import Column, Enum, ForeignKey, String, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlmodel import Field, SQLModel

from meterflow.models.base import new_id, timestamp_column, utcnow

METER_API_NAME_MAX = 100
LABEL_MAX = 200
DESCRIPTION_MAX = 2_000
UNIT_MAX = 50
DIMENSION_KEY_MAX = 100
MAX_DIMENSIONS = 20


class MeterType(enum.StrEnum):
    SUM = "SUM"
    COUNT = "COUNT"
    MAX = "MAX"
    LATEST = "LATEST"
    RUNNING_TOTAL = "RUNNING_TOTAL"
    UNIQUE_COUNT = "UNIQUE_COUNT"
    DURATION = "DURATION"


class MeterStatus(enum.StrEnum):
    DRAFT = "DRAFT"  # editable; accepts sample events
    ACTIVE = "ACTIVE"  # locked: no trait may change
    DEPRECATED = "DEPRECATED"  # rejects new events; its data stays queryable


def _pg_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    return Enum(enum_cls, name=name, values_callable=lambda e: [m.value for m in e])


class Meter(SQLModel, table=True):
    __tablename__ = "meters"
    __table_args__ = (
        UniqueConstraint("account_id", "meter_api_name", name="uq_meters_account_api_name"),
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
    meter_api_name: str = Field(sa_column=Column(String(METER_API_NAME_MAX), nullable=False))
    label: str = Field(sa_column=Column(String(LABEL_MAX), nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    unit: str | None = Field(default=None, sa_column=Column(String(UNIT_MAX), nullable=True))
    meter_type: MeterType = Field(
        sa_column=Column(_pg_enum(MeterType, "meter_type"), nullable=False)
    )
    # The dimension keys events of this meter may carry. Empty = any key is accepted.
    dimensions: list[str] = Field(
        default_factory=list,
        sa_column=Column(
            ARRAY(String(DIMENSION_KEY_MAX)), nullable=False, server_default=text("'{}'::varchar[]")
        ),
    )
    # UNIQUE_COUNT counts distinct values of this dimension.
    aggregation_dimension: str | None = Field(
        default=None, sa_column=Column(String(DIMENSION_KEY_MAX), nullable=True)
    )
    use_in_billing: bool = Field(default=True, nullable=False)
    status: MeterStatus = Field(
        default=MeterStatus.DRAFT,
        sa_column=Column(_pg_enum(MeterStatus, "meter_status"), nullable=False),
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=timestamp_column())
    activated_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
    deprecated_at: datetime | None = Field(
        default=None, sa_column=timestamp_column(nullable=True, default_now=False)
    )
