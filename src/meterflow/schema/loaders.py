"""Per-request DataLoaders: nested fields of a page (a customer's usage, invoice, plan,
balance; an invoice's payment) are read for the whole page at once — a fixed number of SQL
statements per field, whatever the page size — each batch in one short session of its own.

Built per request (the context creates them on first use, never at module level). Over HTTP
they also cache for the request (a customer's plan is read once for `plan` and `wallet`); over
a WebSocket they only batch: its context lives as long as the connection, and a subscription
must read the truth each time, not what an earlier message saw.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from strawberry.dataloader import DataLoader

from meterflow.db import SessionFactory
from meterflow.models import AutoTopUp, Invoice, InvoicePayment, PlanAssignment
from meterflow.services import customer_views, invoice_payments, plans, top_ups, wallet_statement
from meterflow.services.customer_views import MeterTotal
from meterflow.services.pagination import Page
from meterflow.services.wallet_statement import StatementLine

K = TypeVar("K")
LedgerKey = tuple[str, str, int, int | None]
V = TypeVar("V")
R = TypeVar("R")


class PageLoader(DataLoader[K, V]):
    """A DataLoader with the values a list resolver read ahead for its page, as plain values
    (`ready`): no future per key, no gather (see `settled`)."""

    def __init__(self, load_fn: Any, *, cache: bool) -> None:
        super().__init__(load_fn=load_fn, cache=cache)
        self.ready: dict[K, V] = {}


def settled(loader: PageLoader[K, V], key: K) -> V | Awaitable[V]:
    """The value itself when this request has already read it (a list resolver primed the
    loader for its page), else the awaitable load.

    Why: graphql-core completes a plain value in line, but every awaitable costs it a task and
    a gather; on a dashboard page of 100 customers by 5 nested fields that overhead, not SQL,
    was most of the time. A WebSocket's loaders do not cache, so they always load afresh."""
    if key in loader.ready:
        return loader.ready[key]
    if loader.cache:
        future = loader.cache_map.get(key)
        if (
            future is not None
            and future.done()
            and not future.cancelled()
            and future.exception() is None
        ):
            return future.result()
    return loader.load(key)


def then(value: V | Awaitable[V], convert: Callable[[V], R | Awaitable[R]]) -> R | Awaitable[R]:
    """`convert(value)` now if the value is here, else once it is (see `settled`); a convert
    that itself has to wait is awaited too, so the caller never gets an awaitable of one."""
    if inspect.isawaitable(value):
        pending = value

        async def later() -> R:
            result = convert(await pending)
            return await result if inspect.isawaitable(result) else result

        return later()
    return convert(value)


def _now() -> datetime:
    return datetime.now(UTC)


class Loaders:
    def __init__(
        self, session_factory: SessionFactory, account_id: uuid.UUID, *, cache: bool
    ) -> None:
        self.session_factory = session_factory
        self.account_id = account_id
        self.cache = cache
        self.current_usage: PageLoader[str, list[MeterTotal]] = self._loader(self._usage)
        self.current_invoice: PageLoader[str, Invoice | None] = self._loader(self._invoices)
        self.assignments: PageLoader[str, list[PlanAssignment]] = self._loader(self._assignments)
        self.plan: DataLoader[uuid.UUID, plans.LoadedPlan | None] = self._loader(self._plans)
        # The plan a customer is on now, in one round trip (assignments and plans together).
        self.current_plan: PageLoader[str, plans.LoadedPlan | None] = self._loader(
            self._current_plans
        )
        self.balance: PageLoader[tuple[str, str], Decimal] = self._loader(self._balances)
        self.payment: DataLoader[uuid.UUID, InvoicePayment | None] = self._loader(self._payments)
        self.auto_top_up: DataLoader[tuple[str, str], AutoTopUp | None] = self._loader(
            self._auto_top_ups
        )
        # (customer, currency, limit, after) → that page of the wallet's statement.
        self.ledger: DataLoader[LedgerKey, Page[StatementLine]] = self._loader(self._ledgers)
        # Plan id → its GraphQL view (schema.customers._plan): one per plan a request.
        self.plan_views: dict[uuid.UUID, Any] = {}

    async def prime_customers(self, customer_ids: Sequence[str], fields: Collection[str]) -> None:
        """Reads what a page of customers asks for (`fields`: currentUsage, currentInvoice,
        plan, planAssignments, wallet — the default-currency wallet) for the whole page at
        once, side by side, so each customer's resolvers find their values settled.

        A read that fails is left in its loader: the field that asks for it fails alone, as it
        would have without priming."""
        if not self.cache or not customer_ids:
            return
        ids = list(dict.fromkeys(customer_ids))
        reads: list[Awaitable[None]] = []
        if "currentUsage" in fields:
            reads.append(self._ahead(self.current_usage, self._usage, ids))
        if "currentInvoice" in fields:
            reads.append(self._ahead(self.current_invoice, self._invoices, ids))
        if "planAssignments" in fields:
            reads.append(self._ahead(self.assignments, self._assignments, ids))
        if "wallet" in fields:
            reads.append(self._prime_wallets(ids))
        elif "plan" in fields:
            reads.append(self._ahead(self.current_plan, self._current_plans, ids))
        await asyncio.gather(*reads)

    @staticmethod
    async def _ahead(
        loader: PageLoader[K, V], batch: Callable[[Sequence[K]], Awaitable[list[V]]], keys: list[K]
    ) -> None:
        """One batch read straight into `ready`. A read that fails leaves nothing there: the
        fields that ask for it load (and fail) on their own, as they would have unprimed."""
        try:
            values = await batch(keys)
        except Exception:
            return
        loader.ready.update(zip(keys, values, strict=True))

    async def _prime_wallets(self, customer_ids: list[str]) -> None:
        """A wallet's default currency is its customer's current plan's: plans, then balances."""
        await self._ahead(self.current_plan, self._current_plans, customer_ids)
        if not all(c in self.current_plan.ready for c in customer_ids):
            return
        wallets = [
            (c, loaded.plan.currency if (loaded := self.current_plan.ready[c]) else "USD")
            for c in customer_ids
        ]
        await self._ahead(self.balance, self._balances, list(dict.fromkeys(wallets)))

    def _loader(self, batch: Callable[[Sequence[K]], Awaitable[Sequence[V]]]) -> PageLoader[K, V]:
        return PageLoader(batch, cache=self.cache)

    async def _read(self, read: Callable[[Any], Awaitable[V]]) -> V:
        async with self.session_factory() as session:
            return await read(session)

    async def _usage(self, keys: Sequence[str]) -> list[list[MeterTotal]]:
        found = await self._read(
            lambda s: customer_views.current_usage(
                s, account_id=self.account_id, customer_ids=keys, now=_now()
            )
        )
        return [found.get(k, []) for k in keys]

    async def _invoices(self, keys: Sequence[str]) -> list[Invoice | None]:
        found = await self._read(
            lambda s: customer_views.current_invoices(
                s, account_id=self.account_id, customer_ids=keys, now=_now()
            )
        )
        return [found.get(k) for k in keys]

    async def _assignments(self, keys: Sequence[str]) -> list[list[PlanAssignment]]:
        found = await self._read(
            lambda s: customer_views.assignments(s, account_id=self.account_id, customer_ids=keys)
        )
        return [found.get(k, []) for k in keys]

    async def _plans(self, keys: Sequence[uuid.UUID]) -> list[plans.LoadedPlan | None]:
        found = await self._read(
            lambda s: plans.load_plans(s, account_id=self.account_id, plan_ids=list(keys))
        )
        return [found.get(k) for k in keys]

    async def _current_plans(self, keys: Sequence[str]) -> list[plans.LoadedPlan | None]:
        found = await self._read(lambda s: self._plans_now(s, keys))
        return [found.get(k) for k in keys]

    async def _plans_now(self, session: Any, keys: Sequence[str]) -> dict[str, plans.LoadedPlan]:
        now = _now()
        history = await customer_views.assignments(
            session, account_id=self.account_id, customer_ids=keys
        )
        current = {k: customer_views.current(history.get(k, []), now) for k in keys}
        loaded = await plans.load_plans(
            session,
            account_id=self.account_id,
            plan_ids=[a.plan_id for a in current.values() if a is not None],
        )
        return {
            k: loaded[a.plan_id]
            for k, a in current.items()
            if a is not None and a.plan_id in loaded
        }

    async def _balances(self, keys: Sequence[tuple[str, str]]) -> list[Decimal]:
        found = await self._read(
            lambda s: customer_views.balances(
                s, account_id=self.account_id, wallets=keys, now=_now()
            )
        )
        return [found[k] for k in keys]

    async def _payments(self, keys: Sequence[uuid.UUID]) -> list[InvoicePayment | None]:
        found = await self._read(
            lambda s: invoice_payments.payments_of(
                s, account_id=self.account_id, invoice_ids=list(keys)
            )
        )
        return [found.get(k) for k in keys]

    async def _auto_top_ups(self, keys: Sequence[tuple[str, str]]) -> list[AutoTopUp | None]:
        found = await self._read(
            lambda s: top_ups.auto_rules(s, account_id=self.account_id, wallets=keys)
        )
        return [found.get(k) for k in keys]

    async def _ledgers(self, keys: Sequence[LedgerKey]) -> list[Page[StatementLine]]:
        """One statement per distinct page shape (a page of wallets asks for one)."""
        shapes: dict[tuple[int, int | None], list[tuple[str, str]]] = {}
        for customer, currency, limit, after in keys:
            shapes.setdefault((limit, after), []).append((customer, currency))

        async def read(session: Any) -> dict[LedgerKey, Page[StatementLine]]:
            out: dict[LedgerKey, Page[StatementLine]] = {}
            for (limit, after), wallets in shapes.items():
                pages = await wallet_statement.ledgers(
                    session, account_id=self.account_id, wallets=wallets, limit=limit, after=after
                )
                out.update({(c, cur, limit, after): page for (c, cur), page in pages.items()})
            return out

        found = await self._read(read)
        return [found[k] for k in keys]
