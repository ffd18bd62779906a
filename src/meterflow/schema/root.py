"""Builds the one Schema from the per-domain query and mutation pieces."""

from __future__ import annotations

import logging

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.tools import merge_types

from meterflow.errors import MeterflowError
from meterflow.resolvers.accounts import AccountMutations, AccountQueries
from meterflow.resolvers.alerts import AlertMutations, AlertQueries, AlertSubscriptions
from meterflow.resolvers.billing import BillingMutations, BillingQueries
from meterflow.resolvers.customers import CustomerMutations, CustomerQueries
from meterflow.resolvers.events import EventMutations, EventQueries
from meterflow.resolvers.meters import MeterMutations, MeterQueries
from meterflow.resolvers.realtime import RealtimeSubscriptions
from meterflow.resolvers.sessions import SessionMutations
from meterflow.resolvers.usage import UsageQueries
from meterflow.schema.discovery import AdminOnlySchemaDiscovery, SuggestionHidingExecutor
from meterflow.schema.input_text import StorableInputText

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
    log.error(
        "unexpected error in GraphQL field %s",
        ".".join(str(p) for p in error.path or ()),
        exc_info=(type(original), original, original.__traceback__),
    )
    return True


def build_schema(
    *, max_depth: int = 12, max_tokens: int = 5_000, max_aliases: int = 30
) -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        # Factories: Strawberry builds fresh extension instances per operation.
        extensions=[
            lambda: MaskErrors(
                should_mask_error=should_mask, error_message="Internal server error."
            ),
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxTokensLimiter(max_token_count=max_tokens),
            lambda: MaxAliasesLimiter(max_alias_count=max_aliases),
            # Before discovery's validation: a NUL or lone surrogate refuses the operation.
            StorableInputText,
            # Last: it validates with the rules the limiters above added.
            AdminOnlySchemaDiscovery,
        ],
        execution_context_class=SuggestionHidingExecutor,
    )


schema = build_schema()
