"""A GraphQL-over-HTTP client as a user's program would use it, plus test accounts."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class TestAccount:
    __test__ = False  # a helper, not a test class

    account_id: uuid.UUID
    admin_key: str


class GraphQLClient:
    def __init__(self, http: httpx.AsyncClient, key: str | None) -> None:
        self.http = http
        self.key = key

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, key: str | None = None
    ) -> httpx.Response:
        headers = {}
        if (key or self.key) is not None:
            headers["X-API-Key"] = key or self.key or ""
        return await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Execute and return `data`; any GraphQL error fails the test with its message."""
        response = await self.post(query, variables, **kw)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]  # type: ignore[no-any-return]

    async def errors(
        self, query: str, variables: dict[str, Any] | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        """Execute a request expected to fail at the top level; return its errors."""
        response = await self.post(query, variables, **kw)
        assert response.status_code < 500, response.text
        body = response.json()
        assert body.get("errors"), body
        return body["errors"]  # type: ignore[no-any-return]
