"""Keyset pagination: opaque cursors over (sort key, id), stable under concurrent inserts.

A list's default order keeps the original cursor, base64 of `time|id` (cursors handed out before
lists could be ordered keep working). Any other order's cursor is base64 of a JSON array
`[order, key, id]`: `order` names the list, field and direction it was made under, and a cursor
used under another order is refused instead of silently skipping or repeating rows.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, tuple_

from meterflow.errors import ValidationError
from meterflow.services.validation import storable

DEFAULT_PAGE_SIZE = 50
# No sort key is longer (names are 200 characters), nor a cursor: longer ones were not made by
# this API (and a long one could nest JSON arrays past the parser's recursion limit).
MAX_KEY_LENGTH = 1_000
MAX_CURSOR_LENGTH = 4_096
# A total has fewer digits than this before or after its point (PostgreSQL's numeric could not
# take 1e999999999 as a parameter).
MAX_KEY_EXPONENT = 1_000


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool
    # Each item's cursor, when the list made them (ordered lists); else the type's own.
    cursors: list[str] | None = None


@dataclass(frozen=True)
class Position:
    created_at: datetime
    id: uuid.UUID


class OrderDirection(enum.StrEnum):
    ASC = "ASC"
    DESC = "DESC"


SortKey = datetime | Decimal | str


@dataclass(frozen=True)
class Ordering:
    """One way to sort a list: by `key_type` values, then by row id, both in `direction`.
    `default` is the list's original order, whose cursors keep the original format."""

    list_name: str
    field: str
    direction: OrderDirection
    key_type: type[datetime] | type[Decimal] | type[str]
    default: bool = False

    @property
    def name(self) -> str:
        return f"{self.list_name}:{self.field}:{self.direction.value}"

    @property
    def descending(self) -> bool:
        return self.direction is OrderDirection.DESC


@dataclass(frozen=True)
class Keyset:
    key: SortKey
    id: uuid.UUID


NOT_A_CURSOR = "after is not a cursor this API returned"


def encode_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def _raw(cursor: str) -> str:
    if len(cursor) > MAX_CURSOR_LENGTH:
        raise ValidationError(NOT_A_CURSOR, field="after")
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise ValidationError(NOT_A_CURSOR, field="after") from exc


def _legacy(raw: str) -> Position:
    try:
        created, row_id = raw.split("|", 1)
        return Position(datetime.fromisoformat(created), uuid.UUID(row_id))
    except ValueError as exc:
        raise ValidationError(NOT_A_CURSOR, field="after") from exc


def decode_cursor(cursor: str) -> Position:
    return _legacy(_raw(cursor))


def encode_position(ordering: Ordering, key: SortKey, row_id: uuid.UUID) -> str:
    """The cursor of a row at (key, row_id) of a list sorted by `ordering`."""
    if ordering.default:
        assert isinstance(key, datetime)
        return encode_cursor(key, row_id)
    text = key.isoformat() if isinstance(key, datetime) else str(key)
    raw = json.dumps([ordering.name, text, str(row_id)], ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _aware(moment: datetime) -> datetime:
    """A cursor's time: with an offset, and one PostgreSQL and asyncpg can take."""
    if moment.utcoffset() is None:
        raise ValueError("a cursor's time has no offset")
    try:
        moment.astimezone(UTC)
    except OverflowError as exc:  # 0001-01-01T00:00+05:00
        raise ValueError("a cursor's time is out of range") from exc
    return moment


def _key(text: Any, key_type: type) -> SortKey:
    if not isinstance(text, str) or len(text) > MAX_KEY_LENGTH or not storable(text):
        raise ValueError("not a sort key")
    if key_type is datetime:
        return _aware(datetime.fromisoformat(text))
    if key_type is Decimal:
        try:
            amount = Decimal(text)
        except InvalidOperation as exc:
            raise ValueError("not an amount") from exc
        if not amount.is_finite() or abs(amount.adjusted()) > MAX_KEY_EXPONENT:
            raise ValueError("not a total")
        return amount
    return text


def decode_position(cursor: str, ordering: Ordering) -> Keyset:
    """Where a cursor made under `ordering` points; a cursor of another order is refused."""
    raw = _raw(cursor)
    if not raw.startswith("["):
        position = _legacy(raw)
        try:
            moment = _aware(position.created_at)
        except ValueError as exc:
            raise ValidationError(NOT_A_CURSOR, field="after") from exc
        if not ordering.default:
            raise _other_order(ordering)
        return Keyset(moment, position.id)
    try:
        made_under, text, row_id = json.loads(raw)
        if not isinstance(made_under, str) or not isinstance(row_id, str):
            raise ValueError("not a cursor")
    except (ValueError, TypeError, RecursionError) as exc:
        raise ValidationError(NOT_A_CURSOR, field="after") from exc
    if made_under != ordering.name:
        raise _other_order(ordering)
    try:
        return Keyset(_key(text, ordering.key_type), uuid.UUID(row_id))
    except (ValueError, TypeError) as exc:
        raise ValidationError(NOT_A_CURSOR, field="after") from exc


def _other_order(ordering: Ordering) -> ValidationError:
    return ValidationError(
        f"after was made for another order (or list) than {ordering.field} "
        f"{ordering.direction.value}: ask for the first page again, without after",
        field="after",
    )


def after_keyset(key: Any, row_id: Any, keyset: Keyset, ordering: Ordering) -> ColumnElement[bool]:
    """Rows strictly after `keyset` in `ordering` (one row comparison: an index on
    (account_id, key, id) answers it in both directions)."""
    left, right = tuple_(key, row_id), tuple_(keyset.key, keyset.id)
    return left < right if ordering.descending else left > right


def order_by(key: Any, row_id: Any, ordering: Ordering) -> list[Any]:
    if ordering.descending:
        return [key.desc(), row_id.desc()]
    return [key.asc(), row_id.asc()]


def page_size(first: int | None, *, maximum: int) -> int:
    if first is None:
        return min(DEFAULT_PAGE_SIZE, maximum)
    if first < 1 or first > maximum:
        raise ValidationError(f"first must be between 1 and {maximum}", field="first")
    return first
