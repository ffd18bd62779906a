from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import strawberry
from graphql import GraphQLError

from meterflow.errors import MeterflowError
from meterflow.resolvers.base import Info, require_reader, token_customer
from meterflow.schema.usage import UsageQueryInput, UsageResult
from meterflow.services import usage


def to_query(input: UsageQueryInput) -> usage.UsageQuery:
    if input.filter is not None and not isinstance(input.filter, dict):
        raise GraphQLError("filter must be an object of lists", extensions={"code": "BAD_INPUT"})
    return usage.UsageQuery(
        meter_api_name=input.meter_api_name,
        grouping=input.time_grouping_interval,
        start=input.start_time,
        end=input.end_time,
        group_by=tuple(input.group_by or ()),
        filter=dict(input.filter or {}),
        limit=input.limit,
        ascending=input.ascending,
        aggregation=input.aggregation,
    )


@strawberry.type
class UsageQueries:
    @strawberry.field(description="Usage of a meter per time interval and group.")
    async def usage(self, info: Info, input: UsageQueryInput) -> UsageResult:
        query = to_query(input)
        own = token_customer(info)
        if own is not None:
            # A customer's token reads only its own usage, whatever the filter asked for.
            asked = query.filter.get(usage.CUSTOMER)
            if asked is not None and asked != [own]:
                require_reader(info, None)  # refuses with FORBIDDEN
            query = replace(query, filter={**query.filter, usage.CUSTOMER: [own]})
        account_id = require_reader(info, own)
        try:
            async with info.context.session_factory() as session:
                answer = await usage.query_usage(
                    session,
                    account_id=account_id,
                    query=query,
                    now=datetime.now(UTC),
                )
        except MeterflowError as exc:
            # A query has no result union: bad input is a top-level error with its code.
            raise GraphQLError(exc.message, extensions={"code": exc.code}) from exc
        return UsageResult.from_answer(answer)
