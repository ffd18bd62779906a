// <meterflow-wallet>: prepaid balance and its ledger, live.
import { html } from "lit";
import { customElement, property, state } from "lit/decorators.js";
import { MeterflowElement, theme, throttle } from "./base";

interface Entry {
  id: string;
  kind: string;
  amount: string;
  balanceAfter: string;
  invoicePeriodStart: string | null;
  invoicePeriodEnd: string | null;
  createdAt: string;
}

interface Wallet {
  currency: string;
  balance: string;
  ledger: { edges: { node: Entry }[] };
}

const KIND: Record<string, string> = {
  GRANT: "Credits granted",
  CONSUMPTION: "Used by invoice",
  EXPIRY: "Credits expired",
};

@customElement("meterflow-wallet")
export class MeterflowWallet extends MeterflowElement {
  static override styles = [theme];

  /** ISO currency of the wallet (default USD). */
  @property() currency = "USD";
  /** How many ledger entries to show, newest first. */
  @property({ type: Number }) entries = 10;

  @state() private wallet: Wallet | null = null;
  private refresh = throttle(() => void this.load().catch((e) => this.fail(e)), 1000);

  protected override async start(): Promise<void> {
    await this.load();
    this.follow<{ walletUpdated: { balance: string } }>(
      `subscription($c: String!, $cur: String!) { walletUpdated(customerId: $c, currency: $cur)
        { currency balance } }`,
      { c: this.customerId, cur: this.currency },
      (d) => {
        if (this.wallet) this.wallet = { ...this.wallet, balance: d.walletUpdated.balance };
        this.dataset.balance = d.walletUpdated.balance;
        this.refresh(); // the ledger changed too
      },
    );
  }

  private async load(): Promise<void> {
    // The ledger is a statement, oldest first: a line per grant, per invoice and grant it draws
    // on (moving with the invoice), per expiry. The newest are shown.
    const data = await this.connection!.query<{ wallet: Wallet | null }>(
      `query($c: String!, $cur: String) { wallet(customerId: $c, currency: $cur) {
        currency balance ledger(first: 500) { edges { node {
          id kind amount balanceAfter invoicePeriodStart invoicePeriodEnd createdAt } } } } }`,
      { c: this.customerId, cur: this.currency },
    );
    this.wallet = data.wallet;
    this.status = data.wallet ? "ready" : "empty";
    this.dataset.balance = data.wallet?.balance ?? "";
  }

  /** "Used by invoice" names the invoice by its billing period. */
  private activity(e: Entry): string {
    const label = KIND[e.kind] ?? e.kind;
    if (e.kind !== "CONSUMPTION" || !e.invoicePeriodStart || !e.invoicePeriodEnd) return label;
    return `${label} ${this.date(e.invoicePeriodStart)} – ${this.date(e.invoicePeriodEnd)}`;
  }

  override render() {
    const waiting = this.renderState("No prepaid wallet.");
    const wallet = this.wallet;
    if (waiting || !wallet) {
      return html`<section aria-label="Prepaid balance"><h2>Prepaid balance</h2>${waiting}</section>`;
    }
    const c = wallet.currency;
    const ledger = wallet.ledger.edges
      .map((e) => e.node)
      .reverse()
      .slice(0, this.entries);
    return html`<section aria-label="Prepaid balance">
      <h2>Prepaid balance</h2>
      <div class="big" aria-live="polite" aria-atomic="true">
        <span class="sr-only">Balance: </span><span class="balance"
          >${this.money(wallet.balance, c)}</span
        >
      </div>
      ${ledger.length === 0
        ? html`<p class="muted">No credit activity yet.</p>`
        : html`<table>
            <caption class="sr-only">Recent credit activity, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Date</th>
                <th scope="col">Activity</th>
                <th scope="col" class="num">Amount</th>
                <th scope="col" class="num">Balance</th>
              </tr>
            </thead>
            <tbody>
              ${ledger.map(
                (e) => html`<tr>
                  <td>${this.dateTime(e.createdAt)}</td>
                  <td>${this.activity(e)}</td>
                  <td class="num">${this.money(e.amount, c)}</td>
                  <td class="num">${this.money(e.balanceAfter, c)}</td>
                </tr>`,
              )}
            </tbody>
          </table>`}
    </section>`;
  }
}
