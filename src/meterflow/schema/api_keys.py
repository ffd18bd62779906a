from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry

from meterflow import models
from meterflow.schema.enums import ApiKeyScope
from meterflow.schema.errors import NotFoundProblem, ValidationProblem
from meterflow.schema.payments import StripeConnection


@strawberry.type(description="An API key. The key itself is shown once, when it is created.")
class ApiKey:
    id: strawberry.ID
    name: str
    prefix: str
    scope: ApiKeyScope
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def from_model(cls, row: models.ApiKey) -> ApiKey:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            prefix=row.prefix,
            scope=row.scope,
            created_at=row.created_at,
            revoked_at=row.revoked_at,
        )


@strawberry.type
class CreatedApiKey:
    api_key: ApiKey
    secret: str = strawberry.field(description="The key. Store it now: it is never shown again.")


@strawberry.input
class CreateApiKeyInput:
    name: str
    scope: ApiKeyScope = models.ApiKeyScope.INGEST


@strawberry.type
class Account:
    id: strawberry.ID
    name: str
    auto_create_customers: bool = strawberry.field(
        description="Create customers named by events that do not exist yet (default on)."
    )
    created_at: datetime

    @strawberry.field(description="The account's Stripe connection, for collecting payments.")
    async def stripe(self, info: strawberry.Info) -> StripeConnection:
        from meterflow.services import stripe_connections

        account_id = uuid.UUID(str(self.id))
        async with info.context.session_factory() as session:
            row = await stripe_connections.get(session, account_id=account_id)
        return StripeConnection.of(account_id, row)

    @classmethod
    def from_model(cls, row: models.Account) -> Account:
        return cls(
            id=strawberry.ID(str(row.id)),
            name=row.name,
            auto_create_customers=row.auto_create_customers,
            created_at=row.created_at,
        )


@strawberry.input
class UpdateAccountInput:
    name: str | None = None
    auto_create_customers: bool | None = None


CreateApiKeyResult = Annotated[
    CreatedApiKey | ValidationProblem, strawberry.union("CreateApiKeyResult")
]
UpdateAccountResult = Annotated[
    Account | ValidationProblem, strawberry.union("UpdateAccountResult")
]
RevokeApiKeyResult = Annotated[ApiKey | NotFoundProblem, strawberry.union("RevokeApiKeyResult")]
