"""Typed errors for expected mutation failures: members of result unions, each with a `code`."""

from __future__ import annotations

import strawberry

from meterflow import errors


@strawberry.interface(name="Error", description="An expected failure of a mutation.")
class Error:
    code: str
    message: str


@strawberry.type(name="ValidationError", description="Input broke a rule; `field` names it.")
class ValidationProblem(Error):
    field: str | None = None


@strawberry.type(name="NotFoundError")
class NotFoundProblem(Error):
    pass


@strawberry.type(name="ConflictError", description="The id is already taken in this account.")
class ConflictProblem(Error):
    pass


@strawberry.type(
    name="InvalidTransitionError",
    description="The lifecycle does not allow this change from the current status.",
)
class InvalidTransitionProblem(Error):
    current_status: str


Problem = ValidationProblem | NotFoundProblem | ConflictProblem | InvalidTransitionProblem


def to_problem(exc: errors.MeterflowError) -> Problem:
    """Map a domain error to its GraphQL type. Unlisted domain errors are programming errors."""
    if isinstance(exc, errors.ValidationError):
        return ValidationProblem(code=exc.code, message=exc.message, field=exc.field)
    if isinstance(exc, errors.NotFoundError):
        return NotFoundProblem(code=exc.code, message=exc.message)
    if isinstance(exc, errors.ConflictError):
        return ConflictProblem(code=exc.code, message=exc.message)
    if isinstance(exc, errors.InvalidTransitionError):
        return InvalidTransitionProblem(
            code=exc.code, message=exc.message, current_status=exc.current_status
        )
    raise exc
