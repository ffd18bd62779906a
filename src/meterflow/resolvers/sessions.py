from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.pubsub import credentials_channel
from meterflow.resolvers.base import Info, mutate, require_admin
from meterflow.schema.errors import NotFoundProblem, ValidationProblem
from meterflow.services import sessions
from meterflow.services.accounts import AccountPrincipal


def portal_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/portal#token={token}"


@strawberry.type(description="A read-only token for one customer's own data (widgets).")
class CustomerSession:
    customer_id: str
    token: str
    expires_at: datetime
    portal_url: str = strawberry.field(
        description="The hosted customer portal for this token: /portal#token=… (the token "
        "rides in the fragment, which browsers never send to a server)."
    )


@strawberry.type
class RevokedSession:
    revoked: bool


CustomerSessionResult = Annotated[
    CustomerSession | ValidationProblem | NotFoundProblem, strawberry.union("CustomerSessionResult")
]
RevokeSessionResult = Annotated[
    RevokedSession | NotFoundProblem, strawberry.union("RevokeSessionResult")
]


@strawberry.type
class SessionMutations:
    @strawberry.mutation(description="Mint a customer session token (default 24 h).")
    async def create_customer_session(
        self, info: Info, customer_id: str, expires_in_seconds: int | None = None
    ) -> CustomerSessionResult:
        return await mutate(
            info,
            lambda session, principal: sessions.create_session(
                session,
                account_id=principal.account_id,
                customer_id=customer_id,
                expires_in_seconds=expires_in_seconds,
                now=datetime.now(UTC),
                secret_key=info.context.secret_key,
            ),
            lambda issued: CustomerSession(
                customer_id=issued.customer_id,
                token=issued.token,
                expires_at=issued.expires_at,
                portal_url=portal_url(str(info.context.request.base_url), issued.token),
            ),
        )

    @strawberry.mutation(description="Revoke a customer session token at once.")
    async def revoke_customer_session(self, info: Info, token: str) -> RevokeSessionResult:
        async def revoke(session: AsyncSession, principal: AccountPrincipal) -> RevokedSession:
            await sessions.revoke(
                session, account_id=principal.account_id, token=token, now=datetime.now(UTC)
            )
            return RevokedSession(revoked=True)

        result = await mutate(info, revoke, lambda result: result)
        if isinstance(result, RevokedSession):  # committed: every API process closes its sockets
            await info.context.publish(credentials_channel(require_admin(info).account_id))
        return result
