"""A small local fake of the Stripe HTTP API, for the real `stripe` SDK to talk to in tests.

Point the SDK at it with ``stripe.StripeClient(key, base_addresses={"api": fake.url},
max_network_retries=0, http_client=stripe.HTTPXClient())``. It speaks form-encoded v1
requests, answers Stripe-shaped JSON, replays idempotent POSTs, and has test controls to
inject failures and to make the state changes Stripe makes on its own (returning the
webhook event Stripe would send; sign its JSON with `sign`).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import hmac
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

Json = dict[str, Any]
API_VERSION = "2024-06-20"
# Payment methods that decline: pm -> (code, decline_code, message).
DECLINES: dict[str, tuple[str, str, str]] = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "pm_card_chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
}
_NO_PM = ("card_declined", "generic_decline", "Your card was declined.")


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header value for `payload`, exactly as Stripe makes it."""
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def parse_form(text: str) -> Json:
    """Parse Stripe's bracket-nested form encoding (`a[b]=1&c[0]=x&c[]=y`); values stay str."""
    root: Json = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        m = re.fullmatch(r"([^\[]+)((?:\[[^\]]*\])*)", key)
        parts = [m[1], *re.findall(r"\[([^\]]*)\]", m[2])] if m else [key]
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1] or str(len(node))] = value
    return cast(Json, _listify(root))


def _listify(node: Any, key: str | None = None) -> Any:
    if not isinstance(node, dict):
        return node
    out = {k: _listify(v, k) for k, v in node.items()}
    if key != "metadata" and out and all(k.isdigit() for k in out):
        return [out[k] for k in sorted(out, key=int)]
    return out


@dataclass
class Recorded:
    method: str
    path: str
    params: Json
    idempotency_key: str | None
    api_key: str | None
    replayed: bool = False
    status: int = 0  # 0: the connection was dropped


@dataclass
class _Fault:
    prefix: str
    status: int  # 0: drop the connection
    remaining: int


@dataclass
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]


class StripeFault(Exception):
    """A Stripe-shaped error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        error = {"type": kind, "code": code, "message": message, "param": param, **extra}
        self.body: Json = {"error": error}


def _missing(param: str) -> StripeFault:
    return StripeFault(400, f"Missing required param: {param}.", param=param)


def _int(p: Json, name: str) -> int | None:
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise StripeFault(400, f"Invalid integer: {raw}", param=name) from None


def _bool(p: Json, name: str, default: bool) -> bool:
    raw = p.get(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise StripeFault(400, f"Invalid boolean: {raw}", param=name)
    return bool(raw == "true")


def _currency(raw: Any) -> str:
    if not isinstance(raw, str) or not re.fullmatch(r"[A-Za-z]{3}", raw):
        raise StripeFault(400, f"Invalid currency: {raw}", param="currency")
    return raw.lower()


def _metadata(current: dict[str, str], raw: Any) -> dict[str, str]:
    """Stripe's metadata update: merge keys, `""` unsets a key, and `metadata=""` unsets all."""
    if raw is None:
        return current
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise StripeFault(400, "Invalid object", param="metadata")
    merged = {**current, **raw}
    return {k: v for k, v in merged.items() if v != ""}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeStripe


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake = cast(_Server, self.server).fake
        reply = fake._handle(self.command, self.path, headers, body.decode())
        if reply is None:  # drop the connection without an answer
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakeStripe:
    """A fake Stripe API on 127.0.0.1 (customers, invoices, invoice items, pay, finalize)."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.events: list[Json] = []
        self._lock = threading.RLock()
        self._customers: dict[str, Json] = {}
        self._invoices: dict[str, Json] = {}
        self._items: dict[str, Json] = {}
        self._ids: dict[str, int] = {}
        self._faults: list[_Fault] = []
        # (api key, idempotency key) -> (method and path, params, stored reply)
        self._idempotent: dict[tuple[str, str], tuple[str, Json, _Reply]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeStripe:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.05,), name="fake-stripe"
        )
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "FakeStripe is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- inspection --------------------------------------------------------------------------

    def posts(self, path_prefix: str = "/v1/") -> list[Recorded]:
        """Non-replayed successful POSTs whose path starts with `path_prefix`."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "POST"
                and r.path.startswith(path_prefix)
                and not r.replayed
                and 200 <= r.status < 300
            ]

    def customer(self, customer_id: str) -> Json:
        with self._lock:
            return copy.deepcopy(self._customers[customer_id])

    def customers(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._customers.values()))

    def invoice(self, invoice_id: str) -> Json:
        with self._lock:
            return copy.deepcopy(self._invoices[invoice_id])

    def invoices(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._invoices.values()))

    def items(self, invoice_id: str) -> list[Json]:
        with self._lock:
            return copy.deepcopy([i for i in self._items.values() if i["invoice"] == invoice_id])

    # -- test controls -----------------------------------------------------------------------

    def set_payment_method(self, customer_id: str, pm: str | None = "pm_card_visa") -> None:
        with self._lock:
            self._customers[customer_id]["invoice_settings"]["default_payment_method"] = pm

    def fail_next(self, count: int = 1, *, status: int = 500, path_prefix: str = "/v1/") -> None:
        """The next `count` requests under `path_prefix` answer `status` and change nothing."""
        with self._lock:
            self._faults.append(_Fault(path_prefix, status, count))

    def drop_connection_next(self, count: int = 1, *, path_prefix: str = "/v1/") -> None:
        """The next `count` requests under `path_prefix` get their socket closed, no answer."""
        with self._lock:
            self._faults.append(_Fault(path_prefix, 0, count))

    def event(self, type: str, obj: Json) -> Json:
        """A webhook event of `type` about `obj`, as Stripe would send it (also kept in .events)."""
        with self._lock:
            event = {
                "id": self._next_id("evt"),
                "object": "event",
                "api_version": API_VERSION,
                "created": int(time.time()),
                "type": type,
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "data": {"object": copy.deepcopy(obj)},
            }
            self.events.append(event)
            return copy.deepcopy(event)

    def mark_paid(self, invoice_id: str) -> Json:
        """The invoice gets paid (say, by automatic collection): "invoice.paid"."""
        with self._lock:
            inv = self._transition(invoice_id, ("open", "uncollectible"))
            self._settle(inv)
            return self.event("invoice.paid", inv)

    def mark_payment_failed(
        self, invoice_id: str, message: str = "Your card was declined."
    ) -> Json:
        """A collection attempt fails: "invoice.payment_failed" (the invoice stays open)."""
        with self._lock:
            inv = self._transition(invoice_id, ("open",))
            inv["attempt_count"] += 1
            inv["attempted"] = True
            self._attempt_failed(inv, "card_declined", message)
            return self.event("invoice.payment_failed", inv)

    def mark_uncollectible(self, invoice_id: str) -> Json:
        with self._lock:
            inv = self._transition(invoice_id, ("open",))
            inv["status"] = "uncollectible"
            return self.event("invoice.marked_uncollectible", inv)

    def void(self, invoice_id: str) -> Json:
        with self._lock:
            inv = self._transition(invoice_id, ("open", "uncollectible"))
            inv["status"] = "void"
            return self.event("invoice.voided", inv)

    def _transition(self, invoice_id: str, allowed: tuple[str, ...]) -> Json:
        inv = self._invoices[invoice_id]
        if inv["status"] not in allowed:
            raise ValueError(f"invoice {invoice_id} is {inv['status']}, not one of {allowed}")
        return inv

    # -- HTTP --------------------------------------------------------------------------------

    def _handle(
        self, method: str, target: str, headers: dict[str, str], body: str
    ) -> _Reply | None:
        url = urlsplit(target)
        params = parse_form("&".join(s for s in (url.query, body) if s))
        auth = headers.get("authorization", "")
        api_key = auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None
        idem = headers.get("idempotency-key") if method == "POST" else None
        rec = Recorded(method, url.path, params, idem, api_key)
        with self._lock:
            self.requests.append(rec)
            reply = self._respond(rec)
            if reply is not None:
                rec.status = reply.status
                reply.headers["Request-Id"] = f"req_{len(self.requests)}"
            return reply

    def _respond(self, rec: Recorded) -> _Reply | None:
        for fault in self._faults:
            if fault.remaining > 0 and rec.path.startswith(fault.prefix):
                fault.remaining -= 1
                self._faults = [f for f in self._faults if f.remaining > 0]
                if fault.status == 0:
                    return None
                return self._error_reply(_injected(fault.status))
        if rec.method == "GET" and rec.path.startswith("/hosted/"):
            return self._hosted_page(rec.path.removeprefix("/hosted/"))
        if not rec.api_key or not rec.api_key.startswith("sk_test_"):
            shown = rec.api_key or ""
            return self._error_reply(
                StripeFault(401, f"Invalid API Key provided: {shown[:8]}{'*' * len(shown[8:])}")
            )
        slot = (rec.api_key, rec.idempotency_key) if rec.idempotency_key else None
        request_line = f"{rec.method} {rec.path}"
        if slot and slot in self._idempotent:
            first_line, first_params, stored = self._idempotent[slot]
            if (first_line, first_params) != (request_line, rec.params):
                return self._error_reply(
                    StripeFault(
                        400,
                        "Keys for idempotent requests can only be used with the same parameters "
                        "they were first used with. Try using a key other than "
                        f"'{rec.idempotency_key}' if you meant to execute a different request.",
                        kind="idempotency_error",
                    )
                )
            rec.replayed = True
            return _Reply(
                stored.status, stored.body, {**stored.headers, "Idempotent-Replayed": "true"}
            )
        try:
            reply = _json_reply(200, self._dispatch(rec.method, rec.path, rec.params))
        except StripeFault as fault:
            reply = self._error_reply(fault)
        except Exception as exc:  # a bug in the fake: answer like Stripe's 500s do
            reply = self._error_reply(StripeFault(500, repr(exc), kind="api_error"))
        if rec.idempotency_key:
            reply.headers["Idempotency-Key"] = rec.idempotency_key
        if slot and reply.status < 500:
            self._idempotent[slot] = (request_line, rec.params, reply)
        return reply

    @staticmethod
    def _error_reply(fault: StripeFault) -> _Reply:
        return _json_reply(fault.status, fault.body)

    def _hosted_page(self, invoice_id: str) -> _Reply:
        inv = self._invoices.get(invoice_id)
        if inv is None or inv["hosted_invoice_url"] is None:
            return _Reply(404, b"not found", {"Content-Type": "text/plain"})
        html = (
            f"<html><body><h1>Invoice {inv['number']}</h1><p>Status: {inv['status']}</p>"
            f"<p>Amount due: {inv['amount_due']} {inv['currency']}</p></body></html>"
        )
        return _Reply(200, html.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def _dispatch(self, method: str, path: str, p: Json) -> Json:
        match method, path.strip("/").split("/"):
            case "POST", ["v1", "customers"]:
                return self._create_customer(p)
            case "GET", ["v1", "customers", cid]:
                return copy.deepcopy(self._get(self._customers, cid, "customer", "id"))
            case "POST", ["v1", "customers", cid]:
                return self._update_customer(cid, p)
            case "POST", ["v1", "invoices"]:
                return self._create_invoice(p)
            case "GET", ["v1", "invoices", iid]:
                return copy.deepcopy(self._get(self._invoices, iid, "invoice", "id"))
            case "POST", ["v1", "invoices", iid, "finalize"]:
                return self._finalize(self._get(self._invoices, iid, "invoice", "id"))
            case "POST", ["v1", "invoices", iid, "pay"]:
                return self._pay(self._get(self._invoices, iid, "invoice", "id"), p)
            case "POST", ["v1", "invoiceitems"]:
                return self._create_item(p)
        raise StripeFault(404, f"Unrecognized request URL ({method}: {path}).")

    # -- resources ---------------------------------------------------------------------------

    def _next_id(self, prefix: str) -> str:
        self._ids[prefix] = self._ids.get(prefix, 0) + 1
        return f"{prefix}_{self._ids[prefix]}"

    @staticmethod
    def _get(table: dict[str, Json], object_id: Any, kind: str, param: str) -> Json:
        found = table.get(object_id) if isinstance(object_id, str) else None
        if found is None:
            raise StripeFault(
                404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param
            )
        return found

    def _create_customer(self, p: Json) -> Json:
        cus: Json = {
            "id": self._next_id("cus"),
            "object": "customer",
            "created": int(time.time()),
            "livemode": False,
            "name": p.get("name") or None,
            "email": p.get("email") or None,
            "description": p.get("description") or None,
            "metadata": _metadata({}, p.get("metadata")),
            "invoice_settings": {"default_payment_method": None},
        }
        self._customers[cus["id"]] = cus
        return copy.deepcopy(cus)

    def _update_customer(self, customer_id: str, p: Json) -> Json:
        cus = self._get(self._customers, customer_id, "customer", "id")
        metadata = _metadata(cus["metadata"], p.get("metadata"))
        for name in ("name", "email", "description"):
            if name in p:
                cus[name] = p[name] or None
        cus["metadata"] = metadata
        settings = p.get("invoice_settings")
        if isinstance(settings, dict) and "default_payment_method" in settings:
            pm = settings["default_payment_method"] or None
            cus["invoice_settings"]["default_payment_method"] = pm
        return copy.deepcopy(cus)

    def _create_invoice(self, p: Json) -> Json:
        if not p.get("customer"):
            raise _missing("customer")
        customer = self._get(self._customers, p["customer"], "customer", "customer")
        currency = _currency(p.get("currency", "usd"))
        method = p.get("collection_method", "charge_automatically")
        if method not in ("charge_automatically", "send_invoice"):
            raise StripeFault(
                400,
                f"Invalid collection_method: {method}; must be one of charge_automatically, "
                "send_invoice",
                param="collection_method",
            )
        days = _int(p, "days_until_due")
        if method == "send_invoice" and days is None:
            raise StripeFault(
                400,
                "Invoices with collection_method=send_invoice must have days_until_due set.",
                param="days_until_due",
            )
        if method == "charge_automatically" and days is not None:
            raise StripeFault(
                400,
                "days_until_due can only be set when collection_method is send_invoice.",
                param="days_until_due",
            )
        behavior = p.get("pending_invoice_items_behavior", "exclude")
        if behavior not in ("include", "exclude"):
            raise StripeFault(
                400,
                f"Invalid pending_invoice_items_behavior: {behavior}",
                param="pending_invoice_items_behavior",
            )
        inv: Json = {
            "id": self._next_id("in"),
            "object": "invoice",
            "created": int(time.time()),
            "livemode": False,
            "customer": customer["id"],
            "currency": currency,
            "status": "draft",
            "collection_method": method,
            "days_until_due": days,
            "due_date": None,
            "auto_advance": _bool(p, "auto_advance", False),
            "metadata": _metadata({}, p.get("metadata")),
            "description": p.get("description") or None,
            "subtotal": 0,
            "total": 0,
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "attempt_count": 0,
            "attempted": False,
            "hosted_invoice_url": None,
            "number": None,
            "last_finalization_error": None,
            "last_payment_error": None,
            "lines": {"object": "list", "data": [], "has_more": False, "total_count": 0},
        }
        inv["lines"]["url"] = f"/v1/invoices/{inv['id']}/lines"
        self._invoices[inv["id"]] = inv
        if behavior == "include":
            for item in self._items.values():
                mine = item["customer"] == customer["id"] and item["currency"] == currency
                if mine and item["invoice"] is None:
                    self._attach(inv, item)
        return copy.deepcopy(inv)

    def _create_item(self, p: Json) -> Json:
        if not p.get("customer"):
            raise _missing("customer")
        customer = self._get(self._customers, p["customer"], "customer", "customer")
        amount = _int(p, "amount")
        if amount is None:
            raise _missing("amount")
        inv = (
            self._get(self._invoices, p["invoice"], "invoice", "invoice")
            if "invoice" in p
            else None
        )
        if inv is None and "currency" not in p:
            raise _missing("currency")
        currency = _currency(p["currency"]) if "currency" in p else cast(Json, inv)["currency"]
        if inv is not None:
            if inv["customer"] != customer["id"]:
                raise StripeFault(
                    400,
                    f"The invoice {inv['id']} belongs to a different customer.",
                    param="invoice",
                )
            if inv["status"] != "draft":
                raise StripeFault(
                    400,
                    f"You can only add invoice items to draft invoices; {inv['id']} is "
                    f"{inv['status']}.",
                    code="invoice_not_editable",
                    param="invoice",
                )
            if currency != inv["currency"]:
                raise StripeFault(
                    400,
                    f"The currency of this invoice item ({currency}) does not match the "
                    f"invoice's currency ({inv['currency']}).",
                    param="currency",
                )
        item: Json = {
            "id": self._next_id("ii"),
            "object": "invoiceitem",
            "date": int(time.time()),
            "livemode": False,
            "customer": customer["id"],
            "invoice": None,
            "amount": amount,
            "currency": currency,
            "description": p.get("description") or None,
            "metadata": _metadata({}, p.get("metadata")),
        }
        self._items[item["id"]] = item
        if inv is not None:
            self._attach(inv, item)
        return copy.deepcopy(item)

    def _attach(self, inv: Json, item: Json) -> None:
        item["invoice"] = inv["id"]
        line = {
            "id": self._next_id("il"),
            "object": "line_item",
            "livemode": False,
            "type": "invoiceitem",
            "invoice": inv["id"],
            "invoice_item": item["id"],
            "amount": item["amount"],
            "currency": item["currency"],
            "description": item["description"],
            "metadata": dict(item["metadata"]),
        }
        inv["lines"]["data"].append(line)
        inv["lines"]["total_count"] = len(inv["lines"]["data"])
        inv["subtotal"] = inv["total"] = inv["total"] + item["amount"]
        # A negative total is credited to the customer's balance: nothing is due.
        inv["amount_due"] = max(inv["total"], 0)
        inv["amount_remaining"] = inv["amount_due"] - inv["amount_paid"]

    def _finalize(self, inv: Json) -> Json:
        if inv["status"] != "draft":
            raise StripeFault(
                400,
                f"This invoice is already finalized, you can't re-finalize a non-draft invoice "
                f"({inv['id']} is {inv['status']}).",
            )
        self._ids["number"] = self._ids.get("number", 0) + 1
        inv["number"] = f"FAKE-{self._ids['number']:04d}"
        inv["hosted_invoice_url"] = f"{self.url}/hosted/{inv['id']}"
        if inv["days_until_due"] is not None:
            inv["due_date"] = int(time.time()) + 86400 * inv["days_until_due"]
        inv["status"] = "open"
        if inv["amount_due"] == 0:
            self._settle(inv)
        return copy.deepcopy(inv)

    def _pay(self, inv: Json, p: Json) -> Json:
        if inv["status"] == "draft":
            self._finalize(inv)
        if inv["status"] == "paid":
            raise StripeFault(400, "Invoice is already paid.")
        if inv["status"] == "void":
            raise StripeFault(400, "This invoice has been voided and can no longer be paid.")
        if _bool(p, "paid_out_of_band", False):
            self._settle(inv)
            return copy.deepcopy(inv)
        customer = self._customers[inv["customer"]]
        pm = p.get("payment_method") or customer["invoice_settings"]["default_payment_method"]
        inv["attempt_count"] += 1
        inv["attempted"] = True
        decline = DECLINES.get(pm, _NO_PM if not pm else None)
        if decline is not None:
            code, decline_code, message = decline
            self._attempt_failed(inv, code, message)
            raise StripeFault(402, message, kind="card_error", code=code, decline_code=decline_code)
        self._settle(inv)
        return copy.deepcopy(inv)

    @staticmethod
    def _settle(inv: Json) -> None:
        inv.update(status="paid", amount_paid=inv["amount_due"], amount_remaining=0)
        inv["last_payment_error"] = None

    @staticmethod
    def _attempt_failed(inv: Json, code: str, message: str) -> None:
        inv["last_payment_error"] = {"message": message, "code": code}


def _injected(status: int) -> StripeFault:
    if status >= 500:
        return StripeFault(status, "An unknown error occurred (injected).", kind="api_error")
    if status == 402:
        return StripeFault(
            status, "Your card was declined.", kind="card_error", code="card_declined"
        )
    if status == 429:
        return StripeFault(status, "Too many requests (injected).", code="rate_limit")
    return StripeFault(status, f"Injected {status} error.")


def _json_reply(status: int, body: Json) -> _Reply:
    data = json.dumps(body, indent=2).encode()
    return _Reply(status, data, {"Content-Type": "application/json", "Stripe-Version": API_VERSION})
