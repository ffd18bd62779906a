// Invoices across customers with a status filter; detail with lines, tiers, discounts,
// credits and payment; finalize.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import type { ColumnDef } from "@tanstack/lit-table";
import { message, request, subscribe } from "../api";
import { date, dateTime, money, number } from "../format";
import { graphql } from "../gql";
import type { ConsoleInvoiceDetailQuery, ConsoleInvoicesQuery, InvoiceStatus } from "../gql/graphql";
import { href, setParams } from "../router";
import "../table";
import { View } from "../view";

graphql(`
  fragment ConsoleInvoiceRow on Invoice {
    id
    customerId
    planId
    periodStart
    periodEnd
    status
    currency
    subtotal
    discount
    creditsApplied
    total
    updatedAt
    finalizedAt
  }
`);

// The list stays light (a page of 500 has no lines: the query cost limit counts every nested
// list); the detail reads one customer's invoices with their lines.
const Invoices = graphql(`
  query ConsoleInvoices($filter: InvoiceFilter, $first: Int) {
    invoices(filter: $filter, first: $first) {
      edges {
        node {
          ...ConsoleInvoiceRow
        }
      }
    }
  }
`);

const InvoiceDetail = graphql(`
  query ConsoleInvoiceDetail($id: ID!) {
    invoice(id: $id) {
      ...ConsoleInvoiceRow
      lines {
        kind
        name
        meterApiName
        dimensions
        units
        billableUnits
        amount
        priced
        tiers {
          tier
          quantity
          unitPrice
          flatFee
          amount
        }
      }
      discounts {
        name
        amount
      }
      payment {
        status
        hostedInvoiceUrl
        lastError
      }
    }
  }
`);

const Void = graphql(`
  mutation ConsoleVoidInvoice($id: ID!) {
    voidInvoice(id: $id) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

const Updated = graphql(`
  subscription ConsoleInvoiceUpdated($customerId: String!) {
    invoiceUpdated(customerId: $customerId) {
      id
      total
      status
    }
  }
`);

const Finalize = graphql(`
  mutation ConsoleFinalizeInvoice($id: ID!) {
    finalizeInvoice(id: $id) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

type Invoice = ConsoleInvoicesQuery["invoices"]["edges"][number]["node"];
type Detail = NonNullable<ConsoleInvoiceDetailQuery["invoice"]>;
const STATUSES = ["", "OPEN", "GRACE", "FINALIZED", "PAID", "VOID", "UNCOLLECTIBLE"];

@customElement("mf-invoices")
export class MfInvoices extends View {
  @state() private rows: Invoice[] = [];
  @state() private detail: Detail | null = null;
  private loaded: string | undefined;
  private stop: (() => void) | undefined;

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.stop?.();
  }

  /** An open invoice's page follows invoiceUpdated: lines and total move as usage arrives. */
  private follow(customerId: string): void {
    this.stop?.();
    let last = "";
    this.stop = subscribe(
      Updated,
      { customerId },
      (data) => {
        const seen = `${data.invoiceUpdated.id}:${data.invoiceUpdated.total}:${data.invoiceUpdated.status}`;
        if (last && seen !== last && data.invoiceUpdated.id === this.route.id) void this.load();
        last = seen;
      },
      () => undefined,
    );
  }

  protected override willUpdate(): void {
    const key = `${this.route.id}|${this.route.params.toString()}`;
    if (key !== this.loaded) {
      this.loaded = key;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    const status = (this.route.params.get("status") || null) as InvoiceStatus | null;
    const customerId = this.route.params.get("customer") || null;
    await this.guard(async () => {
      if (this.route.id) {
        const first = this.detail?.id !== this.route.id;
        this.detail = (await request(InvoiceDetail, { id: this.route.id })).invoice ?? null;
        if (first && this.detail) this.follow(this.detail.customerId);
        return;
      }
      this.stop?.();
      this.detail = null;
      const data = await request(Invoices, { filter: { status, customerId }, first: 500 });
      this.rows = data.invoices.edges.map((e) => e.node);
    });
  }

  private async finalize(invoice: Detail): Promise<void> {
    try {
      const result = (await request(Finalize, { id: invoice.id })).finalizeInvoice;
      this.notice =
        result.__typename === "Invoice"
          ? "Invoice finalized: later events of its period are late."
          : `Not finalized: ${"message" in result ? result.message : "refused"}`;
      await this.load();
    } catch (error) {
      this.notice = `Not finalized: ${message(error)}`;
    }
  }

  private async void(invoice: Detail): Promise<void> {
    try {
      const result = (await request(Void, { id: invoice.id })).voidInvoice;
      this.notice =
        result.__typename === "Invoice"
          ? "Invoice voided: nothing is owed for it; its credits went back to the wallet."
          : `Not voided: ${"message" in result ? result.message : "refused"}`;
      await this.load();
    } catch (error) {
      this.notice = `Not voided: ${message(error)}`;
    }
  }

  private columns: ColumnDef<Invoice, any>[] = [
    {
      id: "customer",
      header: "Customer",
      accessorFn: (i) => i.customerId,
      cell: (info) =>
        html`<a href=${href("invoices", info.row.original.id)}
          >${info.getValue()}</a
        >`,
    },
    { id: "period", header: "Period start", accessorFn: (i) => i.periodStart, cell: (i) => date(i.getValue()) },
    { id: "status", header: "Status", accessorFn: (i) => i.status,
      cell: (info) => html`<span class="badge ${String(info.getValue()).toLowerCase()}">${info.getValue()}</span>` },
    {
      id: "total",
      header: "Total",
      meta: { num: true },
      accessorFn: (i) => Number(i.total),
      cell: (info) => money(info.row.original.total, info.row.original.currency),
    },
    { id: "updated", header: "Updated", accessorFn: (i) => i.updatedAt, cell: (i) => dateTime(i.getValue()) },
  ];

  private renderInvoice(invoice: Detail) {
    const m = (v: string) => money(v, invoice.currency);
    return html`<p><a href=${href("invoices")}>← Invoices</a></p>
      <div class="bar">
        <h1>Invoice for <a href=${href("customers", invoice.customerId)}>${invoice.customerId}</a></h1>
        <span class="badge ${invoice.status.toLowerCase()}">${invoice.status}</span>
        ${invoice.status === "OPEN" || invoice.status === "GRACE"
          ? html`<button type="button" @click=${() => this.finalize(invoice)}>Finalize</button>`
          : nothing}
        ${invoice.status === "FINALIZED" || invoice.status === "UNCOLLECTIBLE"
          ? html`<button type="button" class="danger" @click=${() => this.void(invoice)}>Void</button>`
          : nothing}
      </div>
      ${this.renderNotice()}
      <p class="muted">
        ${date(invoice.periodStart)} – ${date(invoice.periodEnd)} · plan
        <a href=${href("plans", invoice.planId)}>${invoice.planId}</a> · updated
        ${dateTime(invoice.updatedAt)}
      </p>
      <table aria-label="Invoice lines">
        <thead>
          <tr>
            <th scope="col">Line</th><th scope="col" class="num">Units</th>
            <th scope="col" class="num">Billable</th><th scope="col">Tiers</th>
            <th scope="col" class="num">Amount</th>
          </tr>
        </thead>
        <tbody>
          ${invoice.lines.map(
            (line) => html`<tr>
              <td>${line.name}${line.kind !== "USAGE" ? html` <span class="muted">(${line.kind.toLowerCase()})</span>` : nothing}
                ${line.dimensions && Object.keys(line.dimensions as object).length
                  ? html`<span class="muted">${JSON.stringify(line.dimensions)}</span>`
                  : nothing}</td>
              <td class="num">${number(line.units)}</td>
              <td class="num">${number(line.billableUnits)}</td>
              <td>${line.tiers.map((t) => `${number(t.quantity)} × ${m(t.unitPrice)}`).join("; ")}</td>
              <td class="num">${m(line.amount)}</td>
            </tr>`,
          )}
        </tbody>
        <tfoot>
          <tr><th scope="row" colspan="4">Subtotal</th><td class="num">${m(invoice.subtotal)}</td></tr>
          ${invoice.discounts.map(
            (d) => html`<tr><th scope="row" colspan="4">${d.name}</th><td class="num">−${m(d.amount)}</td></tr>`,
          )}
          <tr><th scope="row" colspan="4">Credits applied</th><td class="num">−${m(invoice.creditsApplied)}</td></tr>
          <tr class="total"><th scope="row" colspan="4">Total</th><td class="num invoice-total">${m(invoice.total)}</td></tr>
        </tfoot>
      </table>
      <p>
        Payment:
        ${invoice.payment
          ? html`${invoice.payment.status}${invoice.payment.lastError ? ` (${invoice.payment.lastError})` : ""}`
          : "not collected through Stripe"}
      </p>`;
  }

  override render() {
    if (this.route.id) {
      if (this.status !== "ready") return this.renderState();
      const invoice = this.detail;
      return invoice
        ? this.renderInvoice(invoice)
        : html`<h1>Invoice not found</h1>
            <p>This account has no invoice ${this.route.id}.</p>`;
    }
    const status = this.route.params.get("status") ?? "";
    return html`<h1>Invoices</h1>
      <div class="filters">
        <label
          >Status
          <select
            name="status"
            @change=${(e: Event) => setParams({ status: (e.target as HTMLSelectElement).value })}
          >
            ${STATUSES.map(
              (s) => html`<option value=${s} ?selected=${s === status}>${s || "All"}</option>`,
            )}
          </select></label
        >
      </div>
      ${this.renderNotice()} ${this.renderState()}
      ${this.status === "ready"
        ? this.rows.length
          ? html`<mf-table label="Invoices" .columns=${this.columns} .data=${this.rows}
              .rowKey=${(i: Invoice) => i.id}></mf-table>`
          : this.empty("No invoices match.")
        : nothing}`;
  }
}
