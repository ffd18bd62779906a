// <meterflow-invoice>: the running invoice of the current period, live.
import { css, html } from "lit";
import { customElement, state } from "lit/decorators.js";
import { MeterflowElement, theme } from "./base";

const FIELDS = `id status currency periodStart periodEnd subtotal discount creditsApplied total
  updatedAt lines { kind name meterApiName dimensions units amount } discounts { name amount }
  payment { status hostedInvoiceUrl }`;

export interface InvoiceLine {
  kind: string;
  name: string;
  meterApiName: string | null;
  dimensions: Record<string, string>;
  units: string;
  amount: string;
}

export interface Invoice {
  id: string;
  status: string;
  currency: string;
  periodStart: string;
  periodEnd: string;
  subtotal: string;
  discount: string;
  creditsApplied: string;
  total: string;
  updatedAt: string;
  lines: InvoiceLine[];
  discounts: { name: string; amount: string }[];
  payment: { status: string; hostedInvoiceUrl: string | null } | null;
}

/** Stripe's hosted page for a finalized invoice still to pay; only an http(s) address. */
export function payUrl(invoice: Invoice): string | null {
  const payment = invoice.payment;
  if (invoice.status !== "FINALIZED" || !payment?.hostedInvoiceUrl) return null;
  if (payment.status !== "PENDING" && payment.status !== "FAILED") return null;
  try {
    const url = new URL(payment.hostedInvoiceUrl);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

@customElement("meterflow-invoice")
export class MeterflowInvoice extends MeterflowElement {
  static override styles = [
    theme,
    css`
      .head {
        display: flex;
        justify-content: space-between;
        align-items: baseline;
        gap: 1em;
        flex-wrap: wrap;
      }
      tfoot td {
        border-bottom: none;
      }
      tfoot tr.total-row td {
        font-weight: 600;
        border-top: 2px solid var(--meterflow-text-color, #1f2328);
      }
      .pay {
        display: inline-block;
        margin: 0.5em 0;
        font-weight: 600;
        color: var(--meterflow-accent-color, #0969da);
      }
      .badge {
        font-size: 0.8em;
        border: 1px solid var(--meterflow-border-color, #d0d7de);
        border-radius: 999px;
        padding: 0.1em 0.6em;
      }
    `,
  ];

  @state() private invoice: Invoice | null = null;

  protected override async start(): Promise<void> {
    const data = await this.connection!.query<{ currentInvoice: Invoice | null }>(
      `query($c: String!) { currentInvoice(customerId: $c) { ${FIELDS} } }`,
      { c: this.customerId },
    );
    this.show(data.currentInvoice);
    // The first message is the current state (when there is one), then every change.
    this.follow<{ invoiceUpdated: Invoice }>(
      `subscription($c: String!) { invoiceUpdated(customerId: $c) { ${FIELDS} } }`,
      { c: this.customerId },
      (d) => this.show(d.invoiceUpdated),
    );
  }

  private show(invoice: Invoice | null): void {
    this.invoice = invoice;
    this.status = invoice ? "ready" : "empty";
    this.dataset.total = invoice?.total ?? "";
  }

  private lineLabel(line: InvoiceLine): string {
    const dims = Object.entries(line.dimensions ?? {})
      .map(([k, v]) => `${k}: ${v}`)
      .join(", ");
    return dims ? `${line.name} (${dims})` : line.name;
  }

  override render() {
    const invoice = this.invoice;
    const waiting = this.renderState("No invoice for the current period yet.");
    if (waiting || !invoice) {
      return html`<section aria-label="Current invoice">
        <h2>Current invoice</h2>
        ${waiting}
      </section>`;
    }
    const c = invoice.currency;
    const pay = payUrl(invoice);
    return html`<section aria-label="Current invoice" aria-busy="false">
      <div class="head">
        <h2>Current invoice</h2>
        <span class="badge" title="Invoice status">${invoice.status.toLowerCase()}</span>
      </div>
      <div class="muted">
        ${this.date(invoice.periodStart)} – ${this.date(invoice.periodEnd)}
      </div>
      <div class="big" part="total" aria-live="polite" aria-atomic="true">
        <span class="sr-only">Amount due: </span><span class="total"
          >${this.money(invoice.total, c)}</span
        >
      </div>
      ${pay
        ? html`<a class="pay" part="pay" href=${pay} target="_blank" rel="noopener noreferrer"
            >Pay this invoice</a
          >`
        : null}
      <table>
        <caption class="sr-only">Invoice lines</caption>
        <thead>
          <tr>
            <th scope="col">Item</th>
            <th scope="col" class="num">Units</th>
            <th scope="col" class="num">Amount</th>
          </tr>
        </thead>
        <tbody>
          ${invoice.lines.length === 0
            ? html`<tr><td colspan="3" class="muted">No charges yet.</td></tr>`
            : invoice.lines.map(
                (line) => html`<tr>
                  <td>${this.lineLabel(line)}</td>
                  <td class="num">${this.number(line.units)}</td>
                  <td class="num">${this.money(line.amount, c)}</td>
                </tr>`,
              )}
        </tbody>
        <tfoot>
          <tr>
            <td colspan="2">Subtotal</td>
            <td class="num">${this.money(invoice.subtotal, c)}</td>
          </tr>
          ${invoice.discounts.map(
            (d) => html`<tr>
              <td colspan="2">Discount: ${d.name}</td>
              <td class="num">−${this.money(d.amount, c)}</td>
            </tr>`,
          )}
          ${Number(invoice.creditsApplied) !== 0
            ? html`<tr>
                <td colspan="2">Prepaid credits applied</td>
                <td class="num">−${this.money(invoice.creditsApplied, c)}</td>
              </tr>`
            : null}
          <tr class="total-row">
            <td colspan="2">Total due</td>
            <td class="num">${this.money(invoice.total, c)}</td>
          </tr>
        </tfoot>
      </table>
      <div class="muted">Updated ${this.dateTime(invoice.updatedAt)}</div>
    </section>`;
  }
}
