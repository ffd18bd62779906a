"""The events of `ingestMeterEvents`, coerced without graphql-core's generic walk.

graphql-core coerces a `[MeterEventInput!]!` variable value by value, field by field, type
check by type check: for a 1,000-event batch that walk cost about as much as the rest of the
request. Here a batch whose events are plain — objects with only MeterEventInput's fields, the
required ones present, strings where strings go, the Decimals parsed by the schema's own scalar
— is coerced in one pass, to exactly what graphql-core makes of it (defaults filled in). Any
event that is not plain leaves the whole variable to graphql-core, whose errors say precisely
what is wrong; so this never changes an answer, only its cost.

Cheaper still, the common batch — whole-number values, nothing but MeterEventInput's fields —
is converted by msgspec with the REST fast path's checks (record_decoding.GraphQLEvent) and
reaches the resolver as it is (`TypedEvents`), skipping Strawberry's conversion too; the
resolver turns it into records with `valid_graphql_batch`, or, if one event is not plainly
valid, takes the coercion above down the exact path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLInputObjectType,
    GraphQLSchema,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    TypeNode,
    Undefined,
    VariableNode,
)

from meterflow.schema.scalars import parse_decimal
from meterflow.services import record_decoding

EVENT_INPUT = "MeterEventInput"
STRINGS = ("meterApiName", "customerId")
DECIMALS = ("meterValue", "meterTimeInMillis")
# What parse_decimal reads without refusing (a bool it turns into a NaN that names it).
PLAIN_NUMBER = (int, float, str, Decimal)


def _is_event_list(node: TypeNode) -> bool:
    """`[MeterEventInput!]!`, the one shape handled here."""
    return (
        isinstance(node, NonNullTypeNode)
        and isinstance(node.type, ListTypeNode)
        and isinstance(node.type.type, NonNullTypeNode)
        and isinstance(node.type.type.type, NamedTypeNode)
        and node.type.type.type.name.value == EVENT_INPUT
    )


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    found = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return found[0] if len(found) == 1 else None
    return next((d for d in found if d.name is not None and d.name.value == name), None)


def _coerced(
    events: list[Any], defaults: dict[str, Any], fields: frozenset[str]
) -> list[Any] | None:
    """The events as graphql-core would coerce them, or None if one is not plain."""
    out = []
    for event in events:
        if type(event) is not dict or not fields.issuperset(event):
            return None
        if any(type(event.get(key)) is not str for key in STRINGS):
            return None
        unique_id = event.get("uniqueId")
        if unique_id is not None and type(unique_id) is not str:
            return None
        value, millis = event.get("meterValue"), event.get("meterTimeInMillis")
        if not isinstance(value, PLAIN_NUMBER) or not isinstance(millis, PLAIN_NUMBER):
            return None  # (a bool, a list, null: graphql-core words the error)
        coerced = {**defaults, **event}
        coerced["meterValue"] = parse_decimal(value)
        coerced["meterTimeInMillis"] = parse_decimal(millis)
        out.append(coerced)
    return out


def pre_coerce(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    raw: dict[str, Any] | None,
) -> tuple[dict[str, Any] | None, dict[str, list[Any]]]:
    """The raw variables with every plain events list swapped for `[]` (graphql-core's part
    then costs nothing), and those lists coerced, by variable name."""
    operation = _operation(document, operation_name) if raw else None
    if operation is None or raw is None:
        return raw, {}
    event_type = schema.get_type(EVENT_INPUT)
    assert isinstance(event_type, GraphQLInputObjectType)
    fields = frozenset(event_type.fields)
    defaults = {
        name: field.default_value
        for name, field in event_type.fields.items()
        if field.default_value is not Undefined
    }
    done: dict[str, Any] = {}
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        value = raw.get(name)
        if type(value) is not list or not _is_event_list(definition.type):
            continue
        typed = record_decoding.graphql_events(value) if value else None
        if typed is not None:
            # The resolver takes these as they are; the variable itself coerces to [].
            done[name] = []
            done[TYPED + name] = TypedEvents(typed, partial(_coerced, value, defaults, fields))
            continue
        coerced = _coerced(value, defaults, fields)
        if coerced is not None:
            done[name] = coerced
    if not done:
        return raw, {}
    return {**raw, **{name: [] for name in done if not name.startswith(TYPED)}}, done


# Beside a variable's coerced value, under a key no GraphQL name can be (names are
# [_A-Za-z][_0-9A-Za-z]*): that variable's events in the fast path's shape. Per execution, in
# its own variable values, so nothing carries over to another operation.
TYPED = "\x00typed:"


@dataclass(frozen=True)
class TypedEvents:
    """An events variable msgspec converted (record_decoding.GraphQLEvent): the resolver checks
    them with `valid_graphql_batch`, and if one is not plainly valid takes `coerce()`, what
    graphql-core would have made of the same list, down the exact path."""

    events: list[record_decoding.GraphQLEvent]
    coerce: Callable[[], list[Any] | None]


def typed_events(
    field: FieldNode, argument: str, variable_values: dict[str, Any]
) -> TypedEvents | None:
    """The typed events behind `field`'s `argument`, if it is a variable this module took."""
    for node in field.arguments or ():
        if node.name.value == argument and isinstance(node.value, VariableNode):
            found = variable_values.get(TYPED + node.value.name.value)
            return found if isinstance(found, TypedEvents) else None
    return None
