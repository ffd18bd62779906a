"""Customers of an account: create, update, look up, list."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ConflictError, NotFoundError, ValidationError
from meterflow.models import Customer
from meterflow.models.customer import CUSTOMER_ID_MAX, EMAIL_MAX, NAME_MAX
from meterflow.services import assignments, validation, webhook_events, webhook_payloads
from meterflow.services.pagination import Page, decode_cursor

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


async def list_customers(
    session: AsyncSession, *, account_id: uuid.UUID, limit: int, after: str | None = None
) -> Page[Customer]:
    query = select(Customer).where(col(Customer.account_id) == account_id)
    if after:
        position = decode_cursor(after)
        query = query.where(
            tuple_(col(Customer.created_at), col(Customer.id))
            > tuple_(position.created_at, position.id)
        )
    rows = list(
        await session.scalars(
            query.order_by(col(Customer.created_at), col(Customer.id)).limit(limit + 1)
        )
    )
    return Page(items=rows[:limit], has_next_page=len(rows) > limit)
