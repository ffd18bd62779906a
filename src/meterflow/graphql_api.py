"""The GraphQL API's composition root: one Schema merged from the resolvers' per-domain query,
mutation and subscription pieces, with error masking and the request limits around it.

It sits above both `resolvers/` and `schema/` (app → here → resolvers → schema types →
services): nothing under `schema/` imports it or the resolvers (tests/test_structure.py)."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from meterflow.db import TIMEOUT_MESSAGE, bad_value, is_timeout
from meterflow.errors import MeterflowError
from meterflow.query_cost import QueryCostLimiter
from meterflow.resolvers.accounts import AccountMutations, AccountQueries
from meterflow.resolvers.alerts import AlertMutations, AlertQueries, AlertSubscriptions
from meterflow.resolvers.billing import BillingMutations, BillingQueries
from meterflow.resolvers.customers import CustomerMutations, CustomerQueries
from meterflow.resolvers.events import EventMutations, EventQueries
from meterflow.resolvers.invoice_lookup import InvoiceLookupQueries
from meterflow.resolvers.meters import MeterMutations, MeterQueries
from meterflow.resolvers.payments import PaymentMutations, PaymentQueries
from meterflow.resolvers.price_preview import PricePreviewQueries
from meterflow.resolvers.realtime import RealtimeSubscriptions
from meterflow.resolvers.sessions import SessionMutations
from meterflow.resolvers.usage import UsageQueries
from meterflow.resolvers.webhooks import WebhookMutations, WebhookQueries
from meterflow.schema.discovery import AdminOnlySchemaDiscovery, SuggestionHidingExecutor
from meterflow.schema.input_text import StorableInputText
from meterflow.schema.scalars import SCALAR_MAP
from meterflow.services.pagination import page_size

log = logging.getLogger("meterflow.graphql")

Query = merge_types(
    "Query",
    (
        AccountQueries,
        CustomerQueries,
        MeterQueries,
        EventQueries,
        UsageQueries,
        BillingQueries,
        InvoiceLookupQueries,
        PricePreviewQueries,
        PaymentQueries,
        WebhookQueries,
        AlertQueries,
    ),
)
Mutation = merge_types(
    "Mutation",
    (
        AccountMutations,
        CustomerMutations,
        MeterMutations,
        EventMutations,
        BillingMutations,
        PaymentMutations,
        WebhookMutations,
        SessionMutations,
        AlertMutations,
    ),
)


Subscription = merge_types("Subscription", (RealtimeSubscriptions, AlertSubscriptions))


def should_mask(error: GraphQLError) -> bool:
    """Mask only the unexpected; parse and validation errors explain the client's mistake."""
    original = error.original_error
    if original is None or isinstance(original, (GraphQLError, MeterflowError)):
        return False
    if is_timeout(original):
        log.warning(
            "statement timeout in GraphQL field %s", ".".join(str(p) for p in error.path or ())
        )
        return True
    if bad_value(original) is not None:
        return True  # not a bug: answered BAD_INPUT with the database's reason
    log.error(
        "unexpected error in GraphQL field %s",
        ".".join(str(p) for p in error.path or ()),
        exc_info=(type(original), original, original.__traceback__),
    )
    return True


def is_clients_mistake(error: GraphQLError) -> bool:
    """A parse or validation error, or one a resolver raised on purpose (a refusal, a missing
    object): the request's fault, not ours."""
    original = error.original_error
    return original is None or isinstance(original, (GraphQLError, MeterflowError))


class MeterflowSchema(strawberry.Schema):
    """Logs what a client got wrong as one WARNING line naming its operation; our own faults
    are logged with their traceback, at ERROR, where they are masked (should_mask)."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        operation = (execution_context.operation_name if execution_context else None) or "-"
        for error in errors:
            if is_clients_mistake(error):
                where = ".".join(str(p) for p in error.path or ())
                log.warning(
                    "GraphQL operation %s refused%s: %s",
                    operation,
                    f" at {where}" if where else "",
                    error.message,
                )


class MaskUnexpectedErrors(MaskErrors):
    """Masks what should_mask says, except that the two database refusals a client causes
    say what happened: a cancelled statement (TIMEOUT) and a value PostgreSQL cannot hold
    (BAD_INPUT, e.g. a NUL in a string), neither with the statement."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if original is not None and is_timeout(original):
            return self._explained(error, TIMEOUT_MESSAGE, "TIMEOUT")
        if original is not None and (reason := bad_value(original)) is not None:
            return self._explained(
                error, f"a value in the request was refused: {reason}", "BAD_INPUT"
            )
        return super().anonymise_error(error)

    @staticmethod
    def _explained(error: GraphQLError, message: str, code: str) -> GraphQLError:
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code},
        )


def build_schema(
    *,
    max_depth: int = 12,
    max_tokens: int = 5_000,
    max_aliases: int = 30,
    max_cost: int = 100_000,
    max_page_size: int = 500,
) -> strawberry.Schema:
    # A connection asked for without `first` answers the resolvers' default page.
    default_page_size = page_size(None, maximum=max_page_size)
    return MeterflowSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories: Strawberry builds fresh extension instances per operation.
        extensions=[
            lambda: MaskUnexpectedErrors(
                should_mask_error=should_mask, error_message="Internal server error."
            ),
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
            lambda: QueryCostLimiter(
                max_cost=max_cost,
                default_page_size=default_page_size,
                max_first=max_page_size,
            ),
            # Before discovery's validation: a NUL or lone surrogate refuses the operation.
            StorableInputText,
            # Last: it validates with the rules the limiters above added.
            AdminOnlySchemaDiscovery,
        ],
        execution_context_class=SuggestionHidingExecutor,
        # Strict DateTime (an offset is required) and exact Decimal, for every field.
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )


schema = build_schema()
