"""Small input checks shared by services. Each failure names the field and the rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from meterflow.errors import ValidationError

# What PostgreSQL cannot store in text: NUL, and a lone UTF-16 surrogate (JSON's "\ud800"
# decodes to one; asyncpg cannot even encode it).
UNSTORABLE_CHAR = re.compile("[\x00\ud800-\udfff]")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TRAITS = 50
TRAIT_KEY_MAX = 100
TRAIT_VALUE_MAX = 1_000


def storable(text: str) -> bool:
    """Whether PostgreSQL can store this text (and a UTF-8 answer can quote it)."""
    return "\x00" not in text and (text.isascii() or UNSTORABLE_CHAR.search(text) is None)


# Times from clients lie in this window unless a rule is narrower: every datetime computed from
# them (a bucket's end, a billing period's end) stays inside Python's datetime range.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def utc_time(
    value: datetime, *, field: str, earliest: datetime = EARLIEST, latest: datetime = LATEST
) -> datetime:
    """A client's time in UTC, between earliest and latest. A time without a UTC offset is
    refused: read as UTC or as the server's local time, it could bill the wrong hours."""
    if value.utcoffset() is None:
        raise ValidationError(
            f"{field} has no UTC offset: a date-time needs one (e.g. Z or +01:00)", field=field
        )
    try:
        moment = value.astimezone(UTC)
        inside = earliest <= moment <= latest
    except OverflowError:  # 0001-01-01T00:00+05:00 has no UTC datetime
        inside = False
    if not inside:
        raise ValidationError(
            f"{field} must lie between {earliest.isoformat()} and {latest.isoformat()}",
            field=field,
        )
    return moment


def required_text(value: str | None, *, field: str, max_length: int) -> str:
    if value is None or not value.strip():
        raise ValidationError(f"{field} is required and cannot be blank", field=field)
    return bounded_text(value.strip(), field=field, max_length=max_length)


def bounded_text(value: str, *, field: str, max_length: int) -> str:
    if len(value) > max_length:
        raise ValidationError(
            f"{field} is {len(value)} characters long; the limit is {max_length}", field=field
        )
    if not storable(value):
        raise ValidationError(
            f"{field} contains a NUL character or an unpaired surrogate", field=field
        )
    return value


def optional_text(value: str | None, *, field: str, max_length: int) -> str | None:
    if value is None or not value.strip():
        return None
    return bounded_text(value.strip(), field=field, max_length=max_length)


def matching(value: str, pattern: re.Pattern[str], *, field: str, rule: str) -> str:
    if not pattern.fullmatch(value):
        raise ValidationError(f"{field} {value[:100]!r} is not valid: {rule}", field=field)
    return value


def email(value: str | None, *, field: str = "email", max_length: int = 320) -> str | None:
    cleaned = optional_text(value, field=field, max_length=max_length)
    if cleaned is not None and not EMAIL_RE.fullmatch(cleaned):
        raise ValidationError(f"{field} {cleaned[:100]!r} is not an email address", field=field)
    return cleaned


def string_map(value: Any, *, field: str) -> dict[str, str]:
    """Traits and similar: a flat object of short strings (Amberflo stores them that way)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{field} must be an object of string values", field=field)
    if len(value) > MAX_TRAITS:
        raise ValidationError(
            f"{field} has {len(value)} keys; the limit is {MAX_TRAITS}", field=field
        )
    cleaned: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > TRAIT_KEY_MAX:
            raise ValidationError(
                f"{field} keys must be 1-{TRAIT_KEY_MAX} characters", field=f"{field}.{key}"
            )
        if not isinstance(item, str):
            raise ValidationError(
                f"{field}.{key} must be a string, got {type(item).__name__}", field=f"{field}.{key}"
            )
        cleaned[key] = bounded_text(item, field=f"{field}.{key}", max_length=TRAIT_VALUE_MAX)
    return cleaned
