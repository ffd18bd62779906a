"""Filters and orders of the dashboards' lists (customers, invoices), and their connections'
cursors: an ordered list's cursor carries its sort key, so the service makes it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, TypeVar

import strawberry
from graphql import GraphQLError

from meterflow import models
from meterflow.errors import MeterflowError, ValidationError
from meterflow.schema.pagination import PageInfo
from meterflow.services.customers import CustomerOrderField
from meterflow.services.invoice_queries import InvoiceOrderField
from meterflow.services.pagination import OrderDirection, Page

strawberry.enum(OrderDirection, name="OrderDirection")
strawberry.enum(CustomerOrderField, name="CustomerOrderField")
strawberry.enum(InvoiceOrderField, name="InvoiceOrderField")


@strawberry.input(description="Conditions that all hold; a condition left out is not applied.")
class CustomerFilter:
    search: str | None = strawberry.field(
        default=None,
        description="A case-insensitive substring of customerId, name or email (% and _ are "
        "plain characters).",
    )
    has_plan: bool | None = strawberry.field(
        default=None, description="Whether a plan assignment covers now."
    )
    enabled: bool | None = None


@strawberry.input
class CustomerOrder:
    field: CustomerOrderField = strawberry.field(
        default=CustomerOrderField.CREATED_AT,
        description="NAME ignores case; CURRENT_TOTAL is the total of the invoice covering now "
        "(0 without one). Ties are broken by the customer's id.",
    )
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input(description="Conditions that all hold; a condition left out is not applied.")
class InvoiceFilter:
    status: models.InvoiceStatus | None = None
    customer_id: str | None = None
    period_start_from: datetime | None = strawberry.field(
        default=None, description="periodStart at or after this time."
    )
    period_start_to: datetime | None = strawberry.field(
        default=None, description="periodStart before this time."
    )


@strawberry.input
class InvoiceOrder:
    field: InvoiceOrderField = strawberry.field(
        default=InvoiceOrderField.PERIOD_START, description="Ties are broken by the invoice's id."
    )
    direction: OrderDirection = OrderDirection.DESC


class _Edge(Protocol):
    cursor: str


class _Connection(Protocol):
    @property
    def edges(self) -> Sequence[_Edge]: ...

    page_info: PageInfo


C = TypeVar("C", bound=_Connection)


def with_cursors(connection: C, page: Page[Any]) -> C:
    """The connection a type's `from_page` made, with the cursors the ordered list made."""
    if page.cursors is not None:
        for edge, cursor in zip(connection.edges, page.cursors, strict=True):
            edge.cursor = cursor
        connection.page_info = PageInfo.of(connection.edges, page.has_next_page)
    return connection


@contextmanager
def query_errors() -> Iterator[None]:
    """A query has no result union: bad input (a refused cursor, an overlong search) is a
    top-level error with its code and field, never a masked internal error."""
    try:
        yield
    except MeterflowError as exc:
        extensions: dict[str, Any] = {"code": exc.code}
        if isinstance(exc, ValidationError) and exc.field is not None:
            extensions["field"] = exc.field
        raise GraphQLError(exc.message, extensions=extensions) from exc
