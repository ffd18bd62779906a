"""Meters and their lifecycle: DRAFT (editable) → ACTIVE (locked) → DEPRECATED (read-only)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ConflictError, InvalidTransitionError, NotFoundError, ValidationError
from meterflow.models import Meter, MeterEventIdentity, MeterStatus, MeterType
from meterflow.models.meter import (
    DESCRIPTION_MAX,
    LABEL_MAX,
    MAX_DIMENSIONS,
    METER_API_NAME_MAX,
    UNIT_MAX,
)
from meterflow.services import validation, webhook_events, webhook_payloads

METER_API_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}")
DIMENSION_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")


@dataclass(frozen=True)
class MeterSpec:
    """The traits of a meter that a DRAFT may change and an ACTIVE meter locks."""

    label: str
    meter_type: MeterType
    description: str | None = None
    unit: str | None = None
    dimensions: tuple[str, ...] = ()
    aggregation_dimension: str | None = None
    use_in_billing: bool = True


def clean_meter_api_name(value: str | None) -> str:
    name = validation.required_text(value, field="meterApiName", max_length=METER_API_NAME_MAX)
    return validation.matching(
        name,
        METER_API_NAME_RE,
        field="meterApiName",
        rule="letters, digits and _ . : - ; starting with a letter or digit",
    )


def clean_spec(spec: MeterSpec) -> MeterSpec:
    dimensions = tuple(
        validation.matching(
            key,
            DIMENSION_KEY_RE,
            field="dimensions",
            rule="a dimension key is a letter or _ followed by letters, digits, _ . -",
        )
        for key in spec.dimensions
    )
    if len(set(dimensions)) != len(dimensions):
        raise ValidationError("dimensions lists a key more than once", field="dimensions")
    if len(dimensions) > MAX_DIMENSIONS:
        raise ValidationError(
            f"a meter has at most {MAX_DIMENSIONS} dimensions", field="dimensions"
        )

    aggregation = spec.aggregation_dimension or None
    if spec.meter_type is MeterType.UNIQUE_COUNT:
        if aggregation is None:
            raise ValidationError(
                "a UNIQUE_COUNT meter needs aggregationDimension: the dimension whose distinct "
                "values it counts",
                field="aggregationDimension",
            )
        validation.matching(
            aggregation, DIMENSION_KEY_RE, field="aggregationDimension", rule="a dimension key"
        )
        if dimensions and aggregation not in dimensions:
            raise ValidationError(
                f"aggregationDimension {aggregation!r} must be one of the meter's dimensions "
                f"{list(dimensions)}",
                field="aggregationDimension",
            )
    elif aggregation is not None:
        raise ValidationError(
            f"aggregationDimension applies only to UNIQUE_COUNT meters, not {spec.meter_type}",
            field="aggregationDimension",
        )

    return MeterSpec(
        label=validation.required_text(spec.label, field="label", max_length=LABEL_MAX),
        meter_type=spec.meter_type,
        description=validation.optional_text(
            spec.description, field="description", max_length=DESCRIPTION_MAX
        ),
        unit=validation.optional_text(spec.unit, field="unit", max_length=UNIT_MAX),
        dimensions=dimensions,
        aggregation_dimension=aggregation,
        use_in_billing=spec.use_in_billing,
    )


async def create_meter(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str, spec: MeterSpec
) -> Meter:
    name = clean_meter_api_name(meter_api_name)
    spec = clean_spec(spec)
    inserted = await session.scalar(
        insert(Meter)
        .values(
            account_id=account_id,
            id=uuid.uuid4(),
            meter_api_name=name,
            label=spec.label,
            description=spec.description,
            unit=spec.unit,
            meter_type=spec.meter_type,
            dimensions=list(spec.dimensions),
            aggregation_dimension=spec.aggregation_dimension,
            use_in_billing=spec.use_in_billing,
            status=MeterStatus.DRAFT,
        )
        .on_conflict_do_nothing(constraint="uq_meters_account_api_name")
        .returning(Meter)
    )
    if inserted is None:
        raise ConflictError(f"meter {name!r} already exists in this account")
    return inserted


async def get_meter(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str
) -> Meter | None:
    return await session.scalar(
        select(Meter).where(
            col(Meter.account_id) == account_id, col(Meter.meter_api_name) == meter_api_name
        )
    )


async def list_meters(
    session: AsyncSession, *, account_id: uuid.UUID, status: MeterStatus | None = None
) -> list[Meter]:
    query = select(Meter).where(col(Meter.account_id) == account_id)
    if status is not None:
        query = query.where(col(Meter.status) == status)
    return list(await session.scalars(query.order_by(col(Meter.meter_api_name))))


async def _locked_meter(session: AsyncSession, account_id: uuid.UUID, meter_api_name: str) -> Meter:
    meter = await session.scalar(
        select(Meter)
        .where(col(Meter.account_id) == account_id, col(Meter.meter_api_name) == meter_api_name)
        .with_for_update()
    )
    if meter is None:
        raise NotFoundError(f"no meter {meter_api_name!r} in this account")
    return meter


def spec_of(meter: Meter) -> MeterSpec:
    return MeterSpec(
        label=meter.label,
        meter_type=meter.meter_type,
        description=meter.description,
        unit=meter.unit,
        dimensions=tuple(meter.dimensions),
        aggregation_dimension=meter.aggregation_dimension,
        use_in_billing=meter.use_in_billing,
    )


async def update_meter(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    meter_api_name: str,
    changes: dict[str, Any],
    now: datetime,
) -> Meter:
    """Change some traits of a DRAFT meter (keys of `changes` are MeterSpec fields).

    Active meters are locked: to change one, deprecate it and create a new one.
    """
    meter = await _locked_meter(session, account_id, meter_api_name)
    if meter.status is not MeterStatus.DRAFT:
        raise InvalidTransitionError(
            f"meter {meter_api_name!r} is {meter.status}: only a DRAFT meter can be edited. "
            "To change an active meter, deprecate it and create a new one.",
            current_status=meter.status,
        )
    if "dimensions" in changes:
        changes = {**changes, "dimensions": tuple(changes["dimensions"])}
    spec = clean_spec(replace(spec_of(meter), **changes))
    await _keep_what_rollups_were_built_for(session, meter, spec)
    meter.label = spec.label
    meter.description = spec.description
    meter.unit = spec.unit
    meter.meter_type = spec.meter_type
    meter.dimensions = list(spec.dimensions)
    meter.aggregation_dimension = spec.aggregation_dimension
    meter.use_in_billing = spec.use_in_billing
    meter.updated_at = now
    await session.flush()
    return meter


# The traits the rollups were aggregated by: once events exist, changing them would leave rollups
# that no longer mean what the meter says (a SUM's hourly totals are not a MAX's).
_AGGREGATION_TRAITS = (
    ("meter_type", "meterType"),
    ("aggregation_dimension", "aggregationDimension"),
)


async def _keep_what_rollups_were_built_for(
    session: AsyncSession, meter: Meter, spec: MeterSpec
) -> None:
    changed = [
        name for trait, name in _AGGREGATION_TRAITS if getattr(spec, trait) != getattr(meter, trait)
    ]
    if not changed:
        return
    has_events = await session.scalar(
        select(
            exists().where(
                col(MeterEventIdentity.account_id) == meter.account_id,
                col(MeterEventIdentity.meter_id) == meter.id,
            )
        )
    )
    if has_events:
        raise ValidationError(
            f"meter {meter.meter_api_name!r} already has events, and its rollups were built for "
            f"its {' and '.join(changed)}: these cannot change any more. Deprecate the meter and "
            "create a new one instead.",
            field=changed[0],
        )


async def activate_meter(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str, now: datetime
) -> Meter:
    meter = await _locked_meter(session, account_id, meter_api_name)
    if meter.status is not MeterStatus.DRAFT:
        raise InvalidTransitionError(
            f"meter {meter_api_name!r} is {meter.status}: only a DRAFT meter can be activated",
            current_status=meter.status,
        )
    meter.status = MeterStatus.ACTIVE
    meter.activated_at = meter.updated_at = now
    await session.flush()
    await meter_event(session, meter, "meter.activated", now)
    return meter


async def deprecate_meter(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str, now: datetime
) -> Meter:
    meter = await _locked_meter(session, account_id, meter_api_name)
    if meter.status is MeterStatus.DEPRECATED:
        raise InvalidTransitionError(
            f"meter {meter_api_name!r} is already DEPRECATED", current_status=meter.status
        )
    meter.status = MeterStatus.DEPRECATED
    meter.deprecated_at = meter.updated_at = now
    await session.flush()
    await meter_event(session, meter, "meter.deprecated", now)
    return meter


async def meter_event(session: AsyncSession, meter: Meter, event_type: str, now: datetime) -> None:
    await webhook_events.notify(
        session,
        account_id=meter.account_id,
        event_type=event_type,
        build=lambda: [({"meter": webhook_payloads.meter(meter)}, meter.meter_api_name)],
        now=now,
    )
