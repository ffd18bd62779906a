"""The schema's own DateTime and Decimal scalars: strict where Strawberry's are lenient.

- DateTime: a date-time without a UTC offset is refused. Read as server-local time (or as UTC)
  it would bill the wrong hours; the client must say which instant it means.
- Decimal: numbers arrive exact. A JSON integer is exact already; a JSON fraction arrives as
  `jsonbody.ExactFloat`, which keeps the digits that were sent; a literal in the query text is
  read from its own digits. A string is read as a decimal. NaN, Infinity and 1E+400 are Decimals
  the services refuse with a field-specific message; a string that is no number at all becomes
  `NotANumber`, a NaN that remembers the text, so that an event batch can reject that event
  alone (one bad event never fails its batch).
"""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

from graphql import FloatValueNode, IntValueNode, StringValueNode, ValueNode
from strawberry.exceptions import StrawberryInputCoercionError
from strawberry.schema.types.base_scalars import isoformat
from strawberry.types.scalar import ScalarDefinition, scalar

OFFSET_REQUIRED = (
    "a date-time needs a UTC offset (e.g. 2026-01-10T13:37:00Z or +01:00): without one it "
    "could be any of 26 instants"
)


def _bad(message: str) -> StrawberryInputCoercionError:
    return StrawberryInputCoercionError(message, extensions={"code": "BAD_INPUT"})


def parse_datetime(value: object) -> dt.datetime:
    if not isinstance(value, str):
        raise _bad(
            f"DateTime must be an ISO 8601 string with an offset, got {type(value).__name__}"
        )
    try:
        moment = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise _bad(f"{value[:50]!r} is not an ISO 8601 date-time") from None
    if moment.utcoffset() is None:
        raise _bad(f"{value[:50]!r}: {OFFSET_REQUIRED}")
    return moment


def parse_datetime_literal(node: ValueNode, _variables: Any = None) -> dt.datetime:
    if isinstance(node, StringValueNode):
        return parse_datetime(node.value)
    raise _bad("DateTime must be a string")


DateTime = scalar(
    name="DateTime",
    description="An ISO 8601 date-time with a UTC offset (Z or ±hh:mm); one without is refused.",
    serialize=isoformat,
    parse_value=parse_datetime,
    parse_literal=parse_datetime_literal,
)


class NotANumber(decimal.Decimal):
    """A NaN that carries the text it was read from (for a precise per-event rejection)."""

    text: str

    def __new__(cls, text: str) -> NotANumber:
        self = super().__new__(cls, "NaN")
        self.text = text
        return self


def parse_decimal(value: object) -> decimal.Decimal:
    if isinstance(value, bool):
        return NotANumber(str(value).lower())
    if isinstance(value, decimal.Decimal):
        return value
    if isinstance(value, int):
        return decimal.Decimal(value)
    if isinstance(value, float):
        exact = getattr(value, "text", None)  # jsonbody.ExactFloat: the digits as sent
        return decimal.Decimal(exact if exact is not None else repr(value))
    if isinstance(value, str):
        try:
            return decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return NotANumber(value[:50])
    raise _bad(f"Decimal must be a number or a string, got {type(value).__name__}")


def parse_decimal_literal(node: ValueNode, _variables: Any = None) -> decimal.Decimal:
    if isinstance(node, IntValueNode | FloatValueNode | StringValueNode):
        return parse_decimal(node.value)  # the literal's own digits, never a float
    raise _bad("Decimal must be a number or a string")


Decimal = scalar(
    name="Decimal",
    description="An exact decimal: a JSON number or a string (money is written as a string at "
    "its currency's minor unit).",
    serialize=lambda value: format(value, "f"),  # 0.000000000001, never 1E-12
    parse_value=parse_decimal,
    parse_literal=parse_decimal_literal,
)

SCALAR_MAP: dict[object, ScalarDefinition] = {
    dt.datetime: DateTime,
    decimal.Decimal: Decimal,
}
