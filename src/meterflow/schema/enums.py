"""GraphQL enums are the domain's own enums, registered here (models stay free of strawberry)."""

from __future__ import annotations

import strawberry

from meterflow.models import ApiKeyScope, MeterStatus, MeterType

strawberry.enum(MeterType, name="MeterType")
strawberry.enum(MeterStatus, name="MeterStatus")
strawberry.enum(ApiKeyScope, name="ApiKeyScope")

__all__ = ["ApiKeyScope", "MeterStatus", "MeterType"]
