from __future__ import annotations

from starlette.responses import JSONResponse


def graphql_error_response(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the GraphQL response shape, so GraphQL clients surface the message."""
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]},
        status_code=status_code,
        headers=headers,
    )
