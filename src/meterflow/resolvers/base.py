from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.errors import MeterflowError
from meterflow.schema.context import Context
from meterflow.schema.errors import to_problem
from meterflow.services.accounts import AccountPrincipal

Info = strawberry.Info[Context, None]
T = TypeVar("T")
R = TypeVar("R")


def require_principal(info: Info) -> AccountPrincipal:
    principal = info.context.principal
    if principal is None:
        raise GraphQLError(
            "authentication required: send an API key in X-API-Key or Authorization: Bearer",
            extensions={"code": "UNAUTHENTICATED"},
        )
    return principal


def require_admin(info: Info) -> AccountPrincipal:
    principal = require_principal(info)
    if not principal.is_admin:
        raise GraphQLError(
            f"this API key has the {principal.scope.value!r} scope, which only writes meter "
            "events; use an admin key",
            extensions={"code": "FORBIDDEN"},
        )
    return principal


async def mutate(
    info: Info,
    operation: Callable[[AsyncSession, AccountPrincipal], Awaitable[T]],
    present: Callable[[T], R],
) -> Any:
    """Run one admin mutation as one unit of work; expected failures become typed results.

    Typed `Any` because the resolver's declared result union is the real contract: Strawberry
    checks the returned member against it, and a domain error the union does not list fails
    loudly (masked for the client, logged) instead of leaking as an undeclared type.
    """
    principal = require_admin(info)
    try:
        async with info.context.unit_of_work() as session:
            outcome = await operation(session, principal)
    except MeterflowError as exc:
        return to_problem(exc)
    return present(outcome)
