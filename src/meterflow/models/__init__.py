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
from meterflow.models.payments import (
    AutoTopUp,
    CollectionMethod,
    InvoicePayment,
    PaymentStatus,
    StripeConnection,
    StripeEvent,
    TopUp,
    TopUpStatus,
)
from meterflow.models.usage import (
    UsageDaily,
    UsageDistinctValue,
    UsageDurationInterval,
    UsageMeterWatermark,
    UsageRollup,
    UsageWatermark,
)
from meterflow.models.webhooks import (
    WalletLowState,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "Account",
    "AlertDelivery",
    "AlertEvent",
    "AlertRule",
    "ApiKey",
    "ApiKeyScope",
    "AutoTopUp",
    "CollectionMethod",
    "CreditAllocation",
    "CreditGrant",
    "Customer",
    "CustomerSession",
    "IngestNotice",
    "Invoice",
    "InvoicePayment",
    "InvoiceStatus",
    "LedgerKind",
    "Meter",
    "MeterEvent",
    "MeterEventIdentity",
    "MeterStatus",
    "MeterType",
    "OutboxItem",
    "PaymentStatus",
    "PeriodInterval",
    "PlanAssignment",
    "PlanItem",
    "PlanStatus",
    "PricingPlan",
    "StripeConnection",
    "StripeEvent",
    "TopUp",
    "TopUpStatus",
    "UsageDaily",
    "UsageDistinctValue",
    "UsageDurationInterval",
    "UsageMeterWatermark",
    "UsageRollup",
    "UsageWatermark",
    "WalletLedgerEntry",
    "WalletLowState",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
