from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Column, String
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
