from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import strawberry

from meterflow.resolvers.base import Info, mutate, require_admin
from meterflow.schema.meters import (
    CreateMeterInput,
    CreateMeterResult,
    Meter,
    MeterResult,
    MeterStatus,
    UpdateMeterInput,
    UpdateMeterResult,
)
from meterflow.services import meters
from meterflow.services.meters import MeterSpec


def _changes(input: UpdateMeterInput) -> dict[str, Any]:
    """The fields the caller sent. Null clears optional text; required ones reject null."""
    fields = {
        "meter_type": input.meter_type,
        "label": input.label,
        "description": input.description,
        "unit": input.unit,
        "dimensions": input.dimensions,
        "aggregation_dimension": input.aggregation_dimension,
        "use_in_billing": input.use_in_billing,
    }
    changes = {key: value for key, value in fields.items() if value is not strawberry.UNSET}
    for required, empty in (("meter_type", None), ("use_in_billing", None), ("dimensions", None)):
        if required in changes and changes[required] is empty:
            changes.pop(required)
    return changes


@strawberry.type
class MeterQueries:
    @strawberry.field(description="A meter by its meterApiName, or null.")
    async def meter(self, info: Info, meter_api_name: str) -> Meter | None:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            row = await meters.get_meter(
                session, account_id=principal.account_id, meter_api_name=meter_api_name
            )
        return Meter.from_model(row) if row else None

    @strawberry.field(description="The account's meters by name, optionally of one status.")
    async def meters(self, info: Info, status: MeterStatus | None = None) -> list[Meter]:
        principal = require_admin(info)
        async with info.context.session_factory() as session:
            rows = await meters.list_meters(
                session,
                account_id=principal.account_id,
                status=status,
            )
        return [Meter.from_model(row) for row in rows]


@strawberry.type
class MeterMutations:
    @strawberry.mutation(description="Create a meter in DRAFT.")
    async def create_meter(self, info: Info, input: CreateMeterInput) -> CreateMeterResult:
        spec = MeterSpec(
            label=input.label or input.meter_api_name,
            meter_type=input.meter_type,
            description=input.description,
            unit=input.unit,
            dimensions=tuple(input.dimensions),
            aggregation_dimension=input.aggregation_dimension,
            use_in_billing=input.use_in_billing,
        )
        return await mutate(
            info,
            lambda session, principal: meters.create_meter(
                session,
                account_id=principal.account_id,
                meter_api_name=input.meter_api_name,
                spec=spec,
            ),
            Meter.from_model,
        )

    @strawberry.mutation(description="Edit a DRAFT meter. An ACTIVE meter is locked.")
    async def update_meter(self, info: Info, input: UpdateMeterInput) -> UpdateMeterResult:
        return await mutate(
            info,
            lambda session, principal: meters.update_meter(
                session,
                account_id=principal.account_id,
                meter_api_name=input.meter_api_name,
                changes=_changes(input),
                now=datetime.now(UTC),
            ),
            Meter.from_model,
        )

    @strawberry.mutation(description="DRAFT → ACTIVE: the meter's traits lock.")
    async def activate_meter(self, info: Info, meter_api_name: str) -> MeterResult:
        return await mutate(
            info,
            lambda session, principal: meters.activate_meter(
                session,
                account_id=principal.account_id,
                meter_api_name=meter_api_name,
                now=datetime.now(UTC),
            ),
            Meter.from_model,
        )

    @strawberry.mutation(description="→ DEPRECATED: rejects new events; data stays queryable.")
    async def deprecate_meter(self, info: Info, meter_api_name: str) -> MeterResult:
        return await mutate(
            info,
            lambda session, principal: meters.deprecate_meter(
                session,
                account_id=principal.account_id,
                meter_api_name=meter_api_name,
                now=datetime.now(UTC),
            ),
            Meter.from_model,
        )
