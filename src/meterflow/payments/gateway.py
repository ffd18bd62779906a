"""The one seam over Stripe: the calls meterflow makes, through the official `stripe` SDK, with
its answers reduced to the few fields meterflow keeps and its errors sorted by Stripe's own
retry advice (connection problems, 5xx, 429 and idempotency conflicts are worth retrying; card
and request errors are not).

Every POST carries the caller's Idempotency-Key: a retry after a crash or a lost answer makes
Stripe replay the first answer instead of creating a second object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import stripe

# Our own retries go through the outbox (recorded, backed off, visible): none inside the SDK.
SDK_RETRIES = 0
TIMEOUT_SECONDS = 20.0


class PaymentError(Exception):
    """A Stripe call failed. `retryable` follows Stripe's advice for the failure."""

    def __init__(self, message: str, *, retryable: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.code = code


@dataclass(frozen=True)
class StripeCustomer:
    id: str
    default_payment_method: str | None


@dataclass(frozen=True)
class StripeInvoice:
    id: str
    status: str
    hosted_invoice_url: str | None
    attempt_count: int


def _error(exc: stripe.StripeError) -> PaymentError:
    status = exc.http_status or 0
    retryable = (
        isinstance(exc, (stripe.APIConnectionError, stripe.RateLimitError, stripe.IdempotencyError))
        or status >= 500
        or status in (409, 429)
    )
    should = (exc.headers or {}).get("stripe-should-retry") if exc.headers else None
    if should in ("true", "false"):
        retryable = should == "true"
    kind = type(exc).__name__
    text = exc.user_message or str(getattr(exc, "_message", "") or "") or kind
    first = text.strip().splitlines()[0] if text.strip() else kind
    return PaymentError(f"{kind}: {first}"[:500], retryable=retryable, code=exc.code)


def _invoice(obj: dict[str, Any]) -> StripeInvoice:
    return StripeInvoice(
        id=str(obj["id"]),
        status=str(obj.get("status") or ""),
        hosted_invoice_url=obj.get("hosted_invoice_url"),
        attempt_count=int(obj.get("attempt_count") or 0),
    )


class StripeGateway:
    """One account's Stripe, for the length of an `async with`."""

    def __init__(self, secret_key: str, *, api_base: str | None = None) -> None:
        self._http = stripe.HTTPXClient(timeout=TIMEOUT_SECONDS)
        self._client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=SDK_RETRIES,
            http_client=self._http,
        )

    async def __aenter__(self) -> StripeGateway:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.close_async()

    async def _call(self, coroutine: Any) -> dict[str, Any]:
        try:
            obj = await coroutine
        except stripe.StripeError as exc:
            raise _error(exc) from exc
        return obj.to_dict()  # a StripeObject is no dict

    async def create_customer(
        self, *, name: str, email: str | None, metadata: dict[str, str], idempotency_key: str
    ) -> StripeCustomer:
        params: dict[str, Any] = {"name": name, "metadata": metadata}
        if email:
            params["email"] = email
        obj = await self._call(
            self._client.v1.customers.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return StripeCustomer(str(obj["id"]), None)

    async def customer(self, customer_id: str) -> StripeCustomer:
        obj = await self._call(self._client.v1.customers.retrieve_async(customer_id))
        settings = obj.get("invoice_settings") or {}
        method = settings.get("default_payment_method")
        if isinstance(method, dict):
            method = method.get("id")
        return StripeCustomer(str(obj["id"]), str(method) if method else None)

    async def create_invoice(
        self,
        *,
        customer: str,
        currency: str,
        charge_automatically: bool,
        days_until_due: int,
        description: str,
        metadata: dict[str, str],
        idempotency_key: str,
    ) -> StripeInvoice:
        params: dict[str, Any] = {
            "customer": customer,
            "currency": currency.lower(),
            "auto_advance": True,
            "description": description,
            "metadata": metadata,
            # Only the items meterflow adds below: never a stray pending item of the customer's.
            "pending_invoice_items_behavior": "exclude",
        }
        if charge_automatically:
            params["collection_method"] = "charge_automatically"
        else:
            params["collection_method"] = "send_invoice"
            params["days_until_due"] = days_until_due
        obj = await self._call(
            self._client.v1.invoices.create_async(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key},
            )
        )
        return _invoice(obj)

    async def add_item(
        self,
        *,
        customer: str,
        invoice: str,
        amount_minor: int,
        currency: str,
        description: str,
        idempotency_key: str,
    ) -> None:
        await self._call(
            self._client.v1.invoice_items.create_async(
                params={
                    "customer": customer,
                    "invoice": invoice,
                    "amount": amount_minor,
                    "currency": currency.lower(),
                    "description": description,
                },
                options={"idempotency_key": idempotency_key},
            )
        )

    async def finalize(self, invoice: str, *, idempotency_key: str) -> StripeInvoice:
        obj = await self._call(
            self._client.v1.invoices.finalize_invoice_async(
                invoice, options={"idempotency_key": idempotency_key}
            )
        )
        return _invoice(obj)

    async def pay(self, invoice: str, *, idempotency_key: str) -> StripeInvoice:
        obj = await self._call(
            self._client.v1.invoices.pay_async(
                invoice, options={"idempotency_key": idempotency_key}
            )
        )
        return _invoice(obj)


def verify_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """The event Stripe signed, or ValueError when the signature (or the body) is not good:
    a missing or forged signature, a timestamp outside Stripe's 300 s tolerance, bad JSON."""
    try:
        event = stripe.Webhook.construct_event(payload, signature or "", secret)
    except (stripe.SignatureVerificationError, ValueError) as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else "bad signature") from exc
    return event.to_dict()
