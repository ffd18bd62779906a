"""Introspection and "Did you mean ...?" hints draw a map of the whole schema, admin fields
included: they are for admin API keys. Customer session tokens (handed to browsers) and ingest
keys (handed to producers) get neither: `__schema`/`__type` are refused at validation, and
validation and variable errors carry no suggestions (graphql-core's `hide_suggestions`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, validate
from graphql.validation import ValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule

from meterflow.schema.event_variables import pre_coerce
from meterflow.services.accounts import AccountPrincipal

INTROSPECTION_FIELDS = ("__schema", "__type")
REFUSED = (
    "introspection (__schema, __type) is only available to admin API keys; this credential "
    "may only run the operations it is meant for"
)


def sees_the_schema(context: Any) -> bool:
    principal = getattr(context, "principal", None)
    return isinstance(principal, AccountPrincipal) and principal.is_admin


class NoIntrospection(ValidationRule):
    """Like graphql-core's NoSchemaIntrospectionCustomRule, with our message and code.
    `__typename` stays: clients need it to read unions."""

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in INTROSPECTION_FIELDS:
            self.report_error(GraphQLError(REFUSED, node, extensions={"code": "FORBIDDEN"}))


class AdminOnlySchemaDiscovery(SchemaExtension):
    """For anyone but an admin key, validates the document itself (Strawberry then skips its
    own pass): with NoIntrospection added and suggestions hidden."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if (
            not sees_the_schema(context.context)
            and context.graphql_document is not None
            and context.pre_execution_errors is None
        ):
            context.pre_execution_errors = validate(
                context.schema._schema,
                context.graphql_document,
                (
                    *context.validation_rules,
                    # The rules Strawberry adds to every validation.
                    MaybeNullValidationRule,
                    OneOfInputValidationRule,
                    NoIntrospection,
                ),
                hide_suggestions=True,
            )
        yield


class SuggestionHidingExecutor(StrawberryGraphQLCoreExecutionContext):
    """Variable values are checked when execution starts ("Value 'DAYS' does not exist in
    'Grouping' enum. Did you mean ...?"): hide those hints too for anyone but an admin key.
    It also coerces `ingestMeterEvents`' plain events itself, in one pass (event_variables)."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        # graphql-core passes (schema, document, root_value, context_value, variable_values,
        # operation_name, ...) positionally.
        positional = list(args)
        context = kwargs["context_value"] if "context_value" in kwargs else positional[3]
        if not sees_the_schema(context):
            kwargs["hide_suggestions"] = True
        raw = positional[4] if len(positional) > 4 else kwargs.get("raw_variable_values")
        name = positional[5] if len(positional) > 5 else kwargs.get("operation_name")
        raw, events = pre_coerce(positional[0], positional[1], name, raw)
        if len(positional) > 4:
            positional[4] = raw
        else:
            kwargs["raw_variable_values"] = raw
        built = super().build(*positional, **kwargs)
        if isinstance(built, list):  # variables that could not be coerced
            return [_with_cause_code(error) for error in built]
        built.variable_values.coerced.update(events)
        return built


def _with_cause_code(error: GraphQLError) -> GraphQLError:
    """graphql-core rewraps a scalar's refusal of a variable and drops its code (BAD_INPUT)."""
    cause = error.original_error
    code = getattr(cause, "extensions", None) or {}
    if "code" in code and not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": code["code"]}
    return error
