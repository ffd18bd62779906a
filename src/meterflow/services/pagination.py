"""Keyset pagination: opaque cursors over (created_at, id), stable under concurrent inserts."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

from meterflow.errors import ValidationError

DEFAULT_PAGE_SIZE = 50


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool


@dataclass(frozen=True)
class Position:
    created_at: datetime
    id: uuid.UUID


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> Position:
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return Position(datetime.fromisoformat(created), uuid.UUID(row_id))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("after is not a cursor this API returned", field="after") from exc


def page_size(first: int | None, *, maximum: int) -> int:
    if first is None:
        return min(DEFAULT_PAGE_SIZE, maximum)
    if first < 1 or first > maximum:
        raise ValidationError(f"first must be between 1 and {maximum}", field="first")
    return first
