from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from meterflow.resolvers.base import Info, mutate, require_admin, require_reader
from meterflow.schema.customers import (
    CreateCustomerInput,
    CreateCustomerResult,
    Customer,
    CustomerConnection,
    UpdateCustomerInput,
    UpdateCustomerResult,
)
from meterflow.schema.list_orders import CustomerFilter, CustomerOrder, query_errors, with_cursors
from meterflow.schema.selections import selected_below
from meterflow.services import customers
from meterflow.services.pagination import page_size


async def prime_page(info: Info, customer_ids: list[str]) -> None:
    """Reads the nested fields the page asks for, for all of its customers at once."""
    wanted = {
        field.name
        for field in selected_below(info, "edges", "node")
        if field.name != "wallet" or not field.arguments.get("currency")
    }
    await info.context.loaders.prime_customers(customer_ids, wanted)


@strawberry.type
class CustomerQueries:
    @strawberry.field(description="A customer by the account's own customerId, or null.")
    async def customer(self, info: Info, customer_id: str) -> Customer | None:
        account_id = require_reader(info, customer_id)
        async with info.context.session_factory() as session:
            row = await customers.get_customer(
                session, account_id=account_id, customer_id=customer_id
            )
        return Customer.from_model(row) if row else None

    @strawberry.field(
        description="Customers, filtered and ordered (by default: in creation order). A cursor "
        "belongs to the order it was made under."
    )
    async def customers(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: CustomerFilter | None = None,
        order_by: CustomerOrder | None = None,
    ) -> CustomerConnection:
        principal = require_admin(info)
        filter = filter or CustomerFilter()
        order_by = order_by or CustomerOrder()
        with query_errors():
            limit = page_size(first, maximum=info.context.max_page_size)
            async with info.context.session_factory() as session:
                page = await customers.list_customers(
                    session,
                    account_id=principal.account_id,
                    limit=limit,
                    after=after,
                    search=filter.search,
                    has_plan=filter.has_plan,
                    enabled=filter.enabled,
                    order_field=order_by.field,
                    direction=order_by.direction,
                    now=datetime.now(UTC),
                )
        await prime_page(info, [row.customer_id for row in page.items])
        return with_cursors(CustomerConnection.from_page(page), page)


@strawberry.type
class CustomerMutations:
    @strawberry.mutation
    async def create_customer(self, info: Info, input: CreateCustomerInput) -> CreateCustomerResult:
        return await mutate(
            info,
            lambda session, principal: customers.create_customer(
                session,
                account_id=principal.account_id,
                customer_id=input.customer_id,
                name=input.name,
                email=input.email,
                traits=input.traits,
                enabled=input.enabled,
                now=datetime.now(UTC),
            ),
            Customer.from_model,
        )

    @strawberry.mutation
    async def update_customer(self, info: Info, input: UpdateCustomerInput) -> UpdateCustomerResult:
        return await mutate(
            info,
            lambda session, principal: customers.update_customer(
                session,
                account_id=principal.account_id,
                customer_id=input.customer_id,
                name=input.name,
                email=input.email,
                traits=input.traits,
                enabled=input.enabled,
                stripe_customer_id=input.stripe_customer_id,
                now=datetime.now(UTC),
            ),
            Customer.from_model,
        )
