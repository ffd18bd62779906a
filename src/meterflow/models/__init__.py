"""SQLModel tables, one module per domain noun. Importing this package registers them all."""

from meterflow.models.account import Account, CustomerSession
from meterflow.models.alerts import AlertDelivery, AlertEvent, AlertRule, IngestNotice
from meterflow.models.api_key import ApiKey, ApiKeyScope
from meterflow.models.billing import (
    CreditAllocation,
    CreditGrant,
    Invoice,
    InvoiceStatus,
    LedgerKind,
    PeriodInterval,
    PlanAssignment,
    PlanItem,
    PlanStatus,
    PricingPlan,
    WalletLedgerEntry,
)
from meterflow.models.customer import Customer
from meterflow.models.meter import Meter, MeterStatus, MeterType
from meterflow.models.meter_event import MeterEvent, MeterEventIdentity
from meterflow.models.outbox import OutboxItem
from meterflow.models.usage import (
    UsageDaily,
    UsageDistinctValue,
    UsageDurationInterval,
    UsageRollup,
    UsageWatermark,
)

__all__ = [
    "Account",
    "AlertDelivery",
    "AlertEvent",
    "AlertRule",
    "ApiKey",
    "ApiKeyScope",
    "CreditAllocation",
    "CreditGrant",
    "Customer",
    "CustomerSession",
    "IngestNotice",
    "Invoice",
    "InvoiceStatus",
    "LedgerKind",
    "Meter",
    "MeterEvent",
    "MeterEventIdentity",
    "MeterStatus",
    "MeterType",
    "OutboxItem",
    "PeriodInterval",
    "PlanAssignment",
    "PlanItem",
    "PlanStatus",
    "PricingPlan",
    "UsageDaily",
    "UsageDistinctValue",
    "UsageDurationInterval",
    "UsageRollup",
    "UsageWatermark",
    "WalletLedgerEntry",
]
