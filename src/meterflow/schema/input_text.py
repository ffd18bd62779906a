"""GraphQL string arguments must be text PostgreSQL can store.

A NUL character, or an unpaired UTF-16 surrogate (JSON's "\\ud800", which Python decodes to a
lone surrogate), cannot be sent to PostgreSQL at all: asyncpg fails to encode it, or the server
refuses it, and the operation would end as a masked internal error. So every string an
operation passes, as a literal or through a variable, is checked once, before validation, and
such an operation is refused with `BAD_INPUT` naming the argument.

The one exception is `ingestMeterEvents(events:)`: a bad event there is that event's own
REJECTED outcome (services/event_records.py), so one hostile event never costs its batch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from strawberry.extensions import SchemaExtension

from meterflow.services.validation import storable

# Arguments whose strings are judged per record by the service itself.
PER_RECORD_ARGUMENTS = frozenset({("ingestMeterEvents", "events")})


def _value_ok(value: Any) -> bool:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, Mapping):
        return all(_value_ok(k) and _value_ok(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_value_ok(item) for item in value)
    return True


def _node_ok(node: ValueNode, variables: Mapping[str, Any]) -> bool:
    if isinstance(node, StringValueNode):
        return storable(node.value)
    if isinstance(node, VariableNode):
        return _value_ok(variables.get(node.name.value))
    if isinstance(node, ListValueNode):
        return all(_node_ok(item, variables) for item in node.values)
    if isinstance(node, ObjectValueNode):
        return all(_node_ok(field.value, variables) for field in node.fields)
    return True  # numbers, booleans, enums, null


def _fields(
    selection_set: SelectionSetNode | None,
    fragments: Mapping[str, FragmentDefinitionNode],
    seen: set[str],
) -> Iterator[FieldNode]:
    if selection_set is None:
        return
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            yield selection
            yield from _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, InlineFragmentNode):
            yield from _fields(selection.selection_set, fragments, seen)
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name not in seen and name in fragments:
                seen.add(name)
                yield from _fields(fragments[name].selection_set, fragments, seen)


def unstorable_argument(document: DocumentNode, variables: Mapping[str, Any]) -> str | None:
    """`field.argument` of the first string argument that PostgreSQL could not store."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    seen: set[str] = set()
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        for field in _fields(definition.selection_set, fragments, seen):
            for argument in field.arguments or ():
                key = (field.name.value, argument.name.value)
                if key not in PER_RECORD_ARGUMENTS and not _node_ok(argument.value, variables):
                    return f"{key[0]}.{key[1]}"
    return None


class StorableInputText(SchemaExtension):
    """Refuses, before validation, an operation passing a NUL or a lone surrogate."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.pre_execution_errors is None:
            where = unstorable_argument(document, context.variables or {})
            if where is not None:
                # Set before validation runs: Strawberry then answers with this error alone.
                context.pre_execution_errors = [
                    GraphQLError(
                        f"argument {where} contains a NUL character or an unpaired surrogate, "
                        "which cannot be stored",
                        extensions={"code": "BAD_INPUT"},
                    )
                ]
        yield
