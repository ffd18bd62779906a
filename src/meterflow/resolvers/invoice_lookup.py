"""invoice(id): one invoice by its id, for an invoice's page (the lists are by customer)."""

from __future__ import annotations

import uuid

import strawberry

from meterflow.resolvers.base import Info, require_admin
from meterflow.schema.billing import Invoice
from meterflow.services import invoice_queries


@strawberry.type
class InvoiceLookupQueries:
    @strawberry.field(description="An invoice of the account by its id, or null.")
    async def invoice(self, info: Info, id: strawberry.ID) -> Invoice | None:
        principal = require_admin(info)
        try:
            invoice_id = uuid.UUID(str(id))
        except ValueError:
            return None
        async with info.context.session_factory() as session:
            row = await invoice_queries.get_invoice(
                session, account_id=principal.account_id, invoice_id=invoice_id
            )
        return Invoice.from_model(row) if row else None
