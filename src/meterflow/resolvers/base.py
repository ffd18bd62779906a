from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.errors import MeterflowError
from meterflow.schema.context import Context
from meterflow.schema.errors import to_problem
from meterflow.secretbox import SecretBox
from meterflow.services.accounts import AccountPrincipal
from meterflow.services.sessions import CustomerPrincipal

Info = strawberry.Info[Context, None]
T = TypeVar("T")
R = TypeVar("R")


def require_principal(info: Info) -> AccountPrincipal | CustomerPrincipal:
    principal = info.context.principal
    if principal is None:
        raise GraphQLError(
            "authentication required: send an API key in X-API-Key or Authorization: Bearer",
            extensions={"code": "UNAUTHENTICATED"},
        )
    return principal


def _forbidden(message: str) -> GraphQLError:
    return GraphQLError(message, extensions={"code": "FORBIDDEN"})


def require_account_key(info: Info) -> AccountPrincipal:
    """Any API key (admin or ingest); never a customer session token."""
    principal = require_principal(info)
    if isinstance(principal, CustomerPrincipal):
        raise _forbidden("a customer session token is read-only and sees only its customer")
    return principal


def require_admin(info: Info) -> AccountPrincipal:
    principal = require_account_key(info)
    if not principal.is_admin:
        raise _forbidden(
            f"this API key has the {principal.scope.value!r} scope, which only writes meter "
            "events; use an admin key"
        )
    return principal


def require_reader(info: Info, customer_id: str | None) -> uuid.UUID:
    """An admin key, or a customer session token asking about its own customer. Returns the
    account to read from."""
    principal = require_principal(info)
    if isinstance(principal, CustomerPrincipal):
        if customer_id != principal.customer_id:
            raise _forbidden("this session token may only read its own customer's data")
        return principal.account_id
    return require_admin(info).account_id


def secret_box(info: Info) -> SecretBox:
    """Seals and opens stored credentials (the entry point puts it on the context)."""
    box = info.context.secret_box
    if box is None:
        raise RuntimeError("no SecretBox on the GraphQL context")
    return box


def token_customer(info: Info) -> str | None:
    """The customer a session token is bound to, or None for API keys."""
    principal = info.context.principal
    return principal.customer_id if isinstance(principal, CustomerPrincipal) else None


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
