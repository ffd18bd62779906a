"""SQLModel tables, one module per domain noun. Importing this package registers them all."""

from meterflow.models.account import Account
from meterflow.models.api_key import ApiKey, ApiKeyScope
from meterflow.models.customer import Customer
from meterflow.models.meter import Meter, MeterStatus, MeterType
from meterflow.models.meter_event import MeterEvent, MeterEventIdentity
from meterflow.models.usage import (
    UsageDistinctValue,
    UsageDurationInterval,
    UsageRollup,
    UsageWatermark,
)

__all__ = [
    "Account",
    "ApiKey",
    "ApiKeyScope",
    "Customer",
    "Meter",
    "MeterEvent",
    "MeterEventIdentity",
    "MeterStatus",
    "MeterType",
    "UsageDistinctValue",
    "UsageDurationInterval",
    "UsageRollup",
    "UsageWatermark",
]
