"""Customers of an account: create, update, look up, list."""

from __future__ import annotations

import enum
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ConflictError, NotFoundError, ValidationError
from meterflow.models import Customer, Invoice, InvoiceStatus, PlanAssignment
from meterflow.models.customer import CUSTOMER_ID_MAX, EMAIL_MAX, NAME_MAX
from meterflow.services import assignments, validation, webhook_events, webhook_payloads
from meterflow.services.pagination import (
    OrderDirection,
    Ordering,
    Page,
    after_keyset,
    decode_position,
    encode_position,
    order_by,
)

# Printable, no whitespace at the ends; customer ids travel in URLs and CSV files.
CUSTOMER_ID_RE = re.compile(r"[^\s\x00-\x1f](?:[^\x00-\x1f]*[^\s\x00-\x1f])?")


def clean_customer_id(value: str | None) -> str:
    customer_id = validation.required_text(value, field="customerId", max_length=CUSTOMER_ID_MAX)
    return validation.matching(
        customer_id, CUSTOMER_ID_RE, field="customerId", rule="no control characters"
    )


async def create_customer(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    name: str | None = None,
    email: str | None = None,
    traits: Any = None,
    enabled: bool = True,
    now: datetime,
) -> Customer:
    customer_id = clean_customer_id(customer_id)
    values = {
        "account_id": account_id,
        "id": uuid.uuid4(),
        "customer_id": customer_id,
        # Amberflo names a customer after its id when no name is given.
        "name": validation.optional_text(name, field="name", max_length=NAME_MAX) or customer_id,
        "email": validation.email(email, max_length=EMAIL_MAX),
        "traits": validation.string_map(traits, field="traits"),
        "enabled": enabled,
    }
    # ON CONFLICT keeps the transaction usable, unlike catching an IntegrityError.
    inserted = await session.scalar(
        insert(Customer)
        .values(**values)
        .on_conflict_do_nothing(constraint="uq_customers_account_customer_id")
        .returning(Customer)
    )
    if inserted is None:
        raise ConflictError(f"customer {customer_id!r} already exists in this account")
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="customer.created",
        build=lambda: [({"customer": webhook_payloads.customer(inserted)}, customer_id)],
        now=now,
    )
    await assignments.assign_default_plan(
        session, account_id=account_id, customer_ids={customer_id}, now=now
    )
    return inserted


async def get_customer(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str
) -> Customer | None:
    return await session.scalar(
        select(Customer).where(
            col(Customer.account_id) == account_id, col(Customer.customer_id) == customer_id
        )
    )


STRIPE_CUSTOMER_ID = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")


def _stripe_id(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if not STRIPE_CUSTOMER_ID.match(value):
        raise ValidationError(
            "stripeCustomerId must be a Stripe Customer id (cus_ and letters or digits)",
            field="stripeCustomerId",
        )
    return value


async def update_customer(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    name: str | None = None,
    email: str | None = None,
    traits: Any = None,
    enabled: bool | None = None,
    stripe_customer_id: str | None = None,
    now: datetime,
) -> Customer:
    """Partial update: a field left as None is unchanged; an empty email (or Stripe id)
    clears it."""
    customer = await session.scalar(
        select(Customer)
        .where(col(Customer.account_id) == account_id, col(Customer.customer_id) == customer_id)
        .with_for_update()
    )
    if customer is None:
        raise NotFoundError(f"no customer {customer_id!r} in this account")
    if name is not None:
        customer.name = validation.required_text(name, field="name", max_length=NAME_MAX)
    if email is not None:
        customer.email = validation.email(email, max_length=EMAIL_MAX)
    if traits is not None:
        customer.traits = validation.string_map(traits, field="traits")
    if enabled is not None:
        customer.enabled = enabled
    if stripe_customer_id is not None:
        customer.stripe_customer_id = _stripe_id(stripe_customer_id)
    customer.updated_at = now
    await session.flush()
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="customer.updated",
        build=lambda: [({"customer": webhook_payloads.customer(customer)}, customer_id)],
        now=now,
    )
    return customer


class CustomerOrderField(enum.StrEnum):
    CREATED_AT = "CREATED_AT"
    NAME = "NAME"  # case-insensitive: lower(name), in the database's collation
    CURRENT_TOTAL = "CURRENT_TOTAL"  # the running invoice's total, 0 without one


CUSTOMER_SORT_KEYS: dict[CustomerOrderField, type[datetime] | type[Decimal] | type[str]] = {
    CustomerOrderField.CREATED_AT: datetime,
    CustomerOrderField.NAME: str,
    CustomerOrderField.CURRENT_TOTAL: Decimal,
}
# No customerId, name or email is longer: a longer search could match nothing.
SEARCH_MAX = max(CUSTOMER_ID_MAX, NAME_MAX, EMAIL_MAX)


def customer_ordering(field: CustomerOrderField, direction: OrderDirection) -> Ordering:
    return Ordering(
        "customers",
        field.value,
        direction,
        CUSTOMER_SORT_KEYS[field],
        default=field is CustomerOrderField.CREATED_AT and direction is OrderDirection.ASC,
    )


def like_pattern(text: str) -> str:
    """`%text%` for LIKE/ILIKE with ESCAPE '\\': the user's %, _ and \\ match literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _current_totals(account_id: uuid.UUID, now: datetime) -> Any:
    """(customer_id, total) of each invoice covering `now`, VOID ones aside; the newest period
    should a customer have two. One pass over the current invoices (ix_invoices_status_end
    finds them by period_end), hashed against the customers: cheaper than a lookup per
    customer at 10,000 customers."""
    return (
        select(col(Invoice.customer_id).label("customer_id"), col(Invoice.total).label("total"))
        .where(
            col(Invoice.account_id) == account_id,
            col(Invoice.period_start) <= now,
            col(Invoice.period_end) > now,
            col(Invoice.status) != InvoiceStatus.VOID,
        )
        .distinct(col(Invoice.customer_id))
        .order_by(col(Invoice.customer_id), col(Invoice.period_start).desc())
        .subquery("current_invoice")
    )


async def list_customers(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    limit: int,
    now: datetime,
    after: str | None = None,
    search: str | None = None,
    has_plan: bool | None = None,
    enabled: bool | None = None,
    order_field: CustomerOrderField = CustomerOrderField.CREATED_AT,
    direction: OrderDirection = OrderDirection.ASC,
) -> Page[Customer]:
    """A page of the account's customers, filtered, sorted by `order_field` then row id (the
    order's cursors name it: a cursor of another order is refused).

    `search` is a case-insensitive substring of customerId, name or email; `has_plan` asks for
    a plan assignment covering `now`; CURRENT_TOTAL sorts by the total of the invoice covering
    `now` (0 without one), a figure that moves as usage is rated: a walk through its pages is
    consistent per page, not a snapshot."""
    ordering = customer_ordering(order_field, direction)
    position = decode_position(after, ordering) if after else None
    query = select(Customer).where(col(Customer.account_id) == account_id)
    if search is not None:
        search = validation.bounded_text(search, field="filter.search", max_length=SEARCH_MAX)
        pattern = like_pattern(search)
        query = query.where(
            or_(
                col(Customer.customer_id).ilike(pattern, escape="\\"),
                col(Customer.name).ilike(pattern, escape="\\"),
                col(Customer.email).ilike(pattern, escape="\\"),
            )
        )
    if enabled is not None:
        query = query.where(col(Customer.enabled) == enabled)
    if has_plan is not None:
        covered = (
            select(literal(1))
            .where(
                col(PlanAssignment.account_id) == col(Customer.account_id),
                col(PlanAssignment.customer_id) == col(Customer.customer_id),
                col(PlanAssignment.start_time) <= now,
                or_(col(PlanAssignment.end_time).is_(None), col(PlanAssignment.end_time) > now),
            )
            .exists()
        )
        query = query.where(covered if has_plan else ~covered)
    key: Any
    if order_field is CustomerOrderField.NAME:
        key = func.lower(col(Customer.name))
    elif order_field is CustomerOrderField.CURRENT_TOTAL:
        current = _current_totals(account_id, now)
        query = query.outerjoin(current, current.c.customer_id == col(Customer.customer_id))
        key = func.coalesce(current.c.total, literal(Decimal(0), Numeric))
    else:
        key = col(Customer.created_at)
    if position is not None:
        query = query.where(after_keyset(key, col(Customer.id), position, ordering))
    rows = list(
        await session.execute(
            query.add_columns(key.label("sort_key"))
            .order_by(*order_by(key, col(Customer.id), ordering))
            .limit(limit + 1)
        )
    )
    page = rows[:limit]
    return Page(
        items=[row[0] for row in page],
        has_next_page=len(rows) > limit,
        cursors=[encode_position(ordering, row[1], row[0].id) for row in page],
    )
