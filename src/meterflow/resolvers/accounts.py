from __future__ import annotations

import uuid
from datetime import UTC, datetime

import strawberry

from meterflow import models
from meterflow.errors import NotFoundError
from meterflow.pubsub import credentials_channel
from meterflow.resolvers.base import Info, mutate, require_admin
from meterflow.schema.api_keys import (
    Account,
    ApiKey,
    CreateApiKeyInput,
    CreateApiKeyResult,
    CreatedApiKey,
    RevokeApiKeyResult,
    UpdateAccountInput,
    UpdateAccountResult,
)
from meterflow.services import accounts


def _key_id(value: strawberry.ID) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFoundError(f"no API key {value}") from exc


@strawberry.type
class AccountQueries:
    @strawberry.field(description="The account the calling key belongs to.")
    async def account(self, info: Info) -> Account:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            row = await session.get(models.Account, principal.account_id)
        assert row is not None  # the key authenticated, so its account exists
        return Account.from_model(row)

    @strawberry.field(description="The account's API keys (prefixes only).")
    async def api_keys(self, info: Info) -> list[ApiKey]:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            rows = await accounts.list_api_keys(session, account_id=principal.account_id)
        return [ApiKey.from_model(row) for row in rows]


@strawberry.type
class AccountMutations:
    @strawberry.mutation(description="Issue an API key; `ingest` keys can only write events.")
    async def create_api_key(self, info: Info, input: CreateApiKeyInput) -> CreateApiKeyResult:
        return await mutate(
            info,
            lambda session, principal: accounts.issue_api_key(
                session,
                account_id=principal.account_id,
                name=input.name,
                scope=input.scope,
            ),
            lambda issued: CreatedApiKey(
                api_key=ApiKey.from_model(issued.key), secret=issued.secret
            ),
        )

    @strawberry.mutation(description="Change the calling account's settings.")
    async def update_account(self, info: Info, input: UpdateAccountInput) -> UpdateAccountResult:
        return await mutate(
            info,
            lambda session, principal: accounts.update_account(
                session,
                account_id=principal.account_id,
                name=input.name,
                auto_create_customers=input.auto_create_customers,
            ),
            Account.from_model,
        )

    @strawberry.mutation(description="Revoke an API key at once.")
    async def revoke_api_key(self, info: Info, id: strawberry.ID) -> RevokeApiKeyResult:
        result = await mutate(
            info,
            lambda session, principal: accounts.revoke_api_key(
                session, account_id=principal.account_id, key_id=_key_id(id), now=datetime.now(UTC)
            ),
            ApiKey.from_model,
        )
        if isinstance(result, ApiKey):  # committed: every API process closes its sockets
            await info.context.publish(credentials_channel(require_admin(info).account_id))
        return result
