"""What an operation would cost, computed from its text before anything runs.

The depth, token and alias limits bound a document's shape; none bounds what it asks for:
`customers(first: 500) { edges { node { wallet { ledger(first: 500) { ... } } } } }` is shallow
and short, yet asks for 250,000 ledger lines. Like GitHub's node limit, the cost multiplies every
list by the page it asks for:

- every field costs 1 (`__typename` too; the introspection roots `__schema` and `__type` cost 1
  in all: they read the static schema, nothing else, and admin keys only may ask for them);
- a field returning a list costs 1 + n * (the cost of its selection), where n is its `first`
  (a literal, or a variable's value) or its schema default (`alertEvents(first: Int! = 50)`), else
  LIST_ESTIMATE (10: the lists without `first` are a thing's parts — a customer's meters, an
  invoice's lines, a plan's items, a delivery's attempts; the long ones, usage's `values` and a
  batch's `outcomes`, have limits of their own) — a list of scalars (`intervals`, `dimensions`)
  is one value, costing 1;
- a Relay connection (`...Connection { edges { node } }`) costs 1 + its selection, where its
  `edges` (or `nodes`) count as a list of n = its `first`, else the server's default page size;
- fragments and inline fragments add what they select (each type condition of a union or
  interface is counted: an upper bound); arguments are input, never counted
  (`ingestMeterEvents(events: [...])` costs what its answer selects).

The arithmetic saturates at `ceiling`, so a `first` of 1e9 or a deep product neither crashes nor
builds huge numbers; a negative `first` counts as 0 (the resolver refuses it), one that is not a
number (the executor refuses it) as the default. Fragments are costed once per context (a chain
of fragments that each spread the next twice is linear work, not exponential); a fragment cycle
counts 0 (validation refuses it) and a walk deeper than MAX_WALK_DEPTH selections saturates
(the depth limiter refuses it). Pure: the document, the operation name, the variables and the
schema in, a number out.

`QueryCostLimiter` refuses, at validation (so for HTTP and WebSocket operations alike, before any
resolver runs), an operation costing more than the limit, with `QUERY_TOO_COSTLY`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    BREAK,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    Undefined,
    ValueNode,
    VariableNode,
    get_named_type,
    type_from_ast,
)
from graphql.validation import ValidationRule
from strawberry.extensions import SchemaExtension

# A plain list without `first` (`currentUsage`, `lines`, `items`, `groups`, ...): its usual size.
LIST_ESTIMATE = 10
# Costs saturate here: a trillion is refused by any sane limit and is no work to compute.
COST_CEILING = 10**12
# Far beyond the depth limit (12): a walk this deep is refused anyway.
MAX_WALK_DEPTH = 64
INTROSPECTION_ROOTS = frozenset({"__schema", "__type"})
PAGE_FIELDS = frozenset({"edges", "nodes"})

CODE = "QUERY_TOO_COSTLY"


def query_cost(
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
    schema: GraphQLSchema,
    *,
    default_page_size: int,
    list_estimate: int = LIST_ESTIMATE,
    ceiling: int = COST_CEILING,
    max_first: int | None = None,
) -> int:
    """The cost of the operation `operation_name` names (or of the only one); when neither
    picks one, the largest of the document's operations. At most `ceiling`. A `first` above
    `max_first` counts as `max_first`: the resolver refuses it with its own, exact error (the
    page bound), which says more than a cost would."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        op
        for op in operations
        if operation_name is None or (op.name is not None and op.name.value == operation_name)
    ]
    if not chosen or (operation_name is None and len(chosen) > 1):
        chosen = operations  # the executor refuses it; count the worst
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    costs = [0]
    for operation in chosen:
        root = schema.get_root_type(operation.operation)
        if root is None:
            continue
        walk = _Walk(
            schema=schema,
            fragments=fragments,
            variables=variables or {},
            variable_defaults={
                d.variable.name.value: d.default_value
                for d in operation.variable_definitions or ()
                if d.default_value is not None
            },
            default_page_size=default_page_size,
            list_estimate=list_estimate,
            ceiling=ceiling,
            max_first=max_first if max_first is not None else ceiling,
        )
        costs.append(walk.selection_set(operation.selection_set, root, None, 0))
    return min(max(costs), ceiling)


class _Walk:
    def __init__(
        self,
        *,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        variable_defaults: Mapping[str, ValueNode],
        default_page_size: int,
        list_estimate: int,
        ceiling: int,
        max_first: int,
    ) -> None:
        self.schema = schema
        self.max_first = max_first
        self.fragments = fragments
        self.variables = variables
        self.variable_defaults = variable_defaults
        self.default_page_size = default_page_size
        self.list_estimate = list_estimate
        self.ceiling = ceiling
        self.memo: dict[tuple[str, int | None], int] = {}
        self.expanding: set[str] = set()

    def add(self, a: int, b: int) -> int:
        return min(a + b, self.ceiling)

    def times(self, a: int, b: int) -> int:
        return min(a * b, self.ceiling)

    def selection_set(
        self,
        selection_set: SelectionSetNode,
        parent: GraphQLNamedType | None,
        page: int | None,
        depth: int,
    ) -> int:
        """`page`: the page size of the connection `parent` is, for its edges."""
        if depth > MAX_WALK_DEPTH:
            return self.ceiling
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                cost = self.field(selection, parent, page, depth)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = parent if condition is None else _named(self.schema, condition)
                cost = self.selection_set(selection.selection_set, inner, page, depth + 1)
            elif isinstance(selection, FragmentSpreadNode):
                cost = self.fragment(selection.name.value, page, depth + 1)
            else:  # pragma: no cover - graphql-core knows no other selection
                cost = 0
            total = self.add(total, cost)
            if total >= self.ceiling:
                break
        return total

    def fragment(self, name: str, page: int | None, depth: int) -> int:
        definition = self.fragments.get(name)
        if definition is None or name in self.expanding:
            return 0  # unknown or cyclic: validation refuses the document
        key = (name, page)
        if key not in self.memo:
            self.expanding.add(name)
            try:
                inner = _named(self.schema, definition.type_condition)
                self.memo[key] = self.selection_set(definition.selection_set, inner, page, depth)
            finally:
                self.expanding.discard(name)
        return self.memo[key]

    def field(
        self, node: FieldNode, parent: GraphQLNamedType | None, page: int | None, depth: int
    ) -> int:
        name = node.name.value
        if name in INTROSPECTION_ROOTS or node.selection_set is None:
            return 1
        if not isinstance(parent, (GraphQLObjectType, GraphQLInterfaceType)):
            return 1  # validation refuses a selection on a scalar or an unknown type
        definition = parent.fields.get(name)
        if definition is None:
            return 1  # unknown field: validation refuses it
        returns = definition.type
        if isinstance(returns, GraphQLNonNull):
            returns = returns.of_type
        named = get_named_type(returns)
        items, inner_page = 1, None
        if isinstance(returns, GraphQLList):
            if page is not None and name in PAGE_FIELDS:
                items = page  # a connection's edges: its page
            else:
                items = self.first(node, definition, self.list_estimate)
        elif _is_connection(named):
            inner_page = self.first(node, definition, self.default_page_size)
        below = self.selection_set(node.selection_set, named, inner_page, depth + 1)
        return self.add(1, self.times(items, below))

    def first(self, node: FieldNode, definition: GraphQLField, otherwise: int) -> int:
        """The page size a field asks for: its `first`, else its default, else `otherwise`."""
        given = next((a for a in node.arguments or () if a.name.value == "first"), None)
        if given is not None:
            value = self.value(given.value)
        else:
            argument = definition.args.get("first")
            value = None if argument is None else argument.default_value
        count = _whole_number(value)
        if count is None:
            return otherwise
        return min(max(count, 0), self.max_first, self.ceiling)

    def value(self, node: ValueNode) -> Any:
        if isinstance(node, IntValueNode):
            return _parse_int(node.value, self.ceiling)
        if isinstance(node, VariableNode):
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            default = self.variable_defaults.get(name)
            return None if default is None else self.value(default)
        return None  # null, or not a number: the resolver's default (or a refusal)


def _parse_int(text: str, ceiling: int) -> int:
    # int() refuses over 4,300 digits; anything this long saturates anyway.
    digits = text.lstrip("-")
    if len(digits) > len(str(ceiling)):
        return -ceiling if text.startswith("-") else ceiling
    return int(text)


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool) or value is None or value is Undefined:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():  # JSON's 1e9; not inf or nan
        return int(value)
    return None


def _named(schema: GraphQLSchema, condition: Any) -> GraphQLNamedType | None:
    found = type_from_ast(schema, condition)
    return found if isinstance(found, GraphQLNamedType) else None


def _is_connection(named: GraphQLNamedType | None) -> bool:
    """A Relay connection: `XConnection { edges: [XEdge] }` whose edges have a `node`."""
    if not isinstance(named, GraphQLObjectType) or not named.name.endswith("Connection"):
        return False
    edges = named.fields.get("edges")
    if edges is None:
        return False
    edge = get_named_type(edges.type)
    return isinstance(edge, GraphQLObjectType) and "node" in edge.fields


def too_costly(cost: int, limit: int, *, ceiling: int = COST_CEILING) -> GraphQLError:
    figure = f"{cost:,}" if cost < ceiling else f"over {ceiling - 1:,}"
    return GraphQLError(
        f"query cost {figure} exceeds the limit of {limit:,}: ask for smaller pages (first) "
        "or fewer nested lists",
        extensions={"code": CODE},
    )


class QueryCostLimiter(SchemaExtension):
    """Adds to the operation's validation a rule that costs it and refuses it over `max_cost`.

    A validation rule, like QueryDepthLimiter's: every transport validates (HTTP, WebSocket
    queries and subscriptions; discovery.py's own pass reads the same rules), and nothing
    executes after a validation error. The variables are the operation's, read here."""

    def __init__(
        self,
        *,
        max_cost: int,
        default_page_size: int,
        list_estimate: int = LIST_ESTIMATE,
        max_first: int | None = None,
    ) -> None:
        self.max_cost = max_cost
        self.max_first = max_first
        self.default_page_size = default_page_size
        self.list_estimate = list_estimate

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = (*context.validation_rules, self._rule())
        yield

    def _rule(self) -> type[ValidationRule]:
        limiter = self
        execution = self.execution_context

        class QueryCostRule(ValidationRule):
            def enter_document(self, node: DocumentNode, *_args: Any) -> object:
                cost = query_cost(
                    node,
                    execution.operation_name,
                    execution.variables,
                    self.context.schema,
                    default_page_size=limiter.default_page_size,
                    list_estimate=limiter.list_estimate,
                    max_first=limiter.max_first,
                )
                if cost > limiter.max_cost:
                    self.report_error(too_costly(cost, limiter.max_cost))
                return BREAK  # the whole document is costed: nothing more to visit

        return QueryCostRule
