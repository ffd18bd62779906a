"""Domain errors: one tree. Services raise these; resolvers map them to typed GraphQL results.

Anything that is not a `MeterflowError` is a bug: it is masked for clients and logged.
"""

from __future__ import annotations


class MeterflowError(Exception):
    """Base of every expected failure. `code` is stable and machine-readable."""

    code = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ValidationError(MeterflowError):
    code = "VALIDATION_ERROR"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFoundError(MeterflowError):
    code = "NOT_FOUND"


class ConflictError(MeterflowError):
    """A uniqueness rule would be broken (e.g. a customerId already used in the account)."""

    code = "CONFLICT"


class InvalidTransitionError(MeterflowError):
    """A lifecycle rule forbids the change (e.g. editing an ACTIVE meter)."""

    code = "INVALID_TRANSITION"

    def __init__(self, message: str, *, current_status: str) -> None:
        super().__init__(message)
        self.current_status = current_status


class AuthenticationError(MeterflowError):
    code = "UNAUTHENTICATED"


class PermissionDeniedError(MeterflowError):
    code = "FORBIDDEN"
