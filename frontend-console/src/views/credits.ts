// Credits: grant prepaid credits; a customer's wallet and its ledger.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import { message, request } from "../api";
import { dateTime, money } from "../format";
import { graphql } from "../gql";
import type { ConsoleWalletQuery } from "../gql/graphql";
import { setParams } from "../router";
import { View } from "../view";

const Wallet = graphql(`
  query ConsoleWallet($customerId: String!) {
    wallet(customerId: $customerId) {
      customerId
      currency
      balance
      ledger(first: 200) {
        edges {
          node {
            id
            kind
            amount
            balanceAfter
            reason
            invoiceId
            createdAt
          }
        }
      }
    }
  }
`);

const Grant = graphql(`
  mutation ConsoleGrantCredits($input: GrantCreditsInput!) {
    grantCredits(input: $input) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

@customElement("mf-credits")
export class MfCredits extends View {
  @state() private wallet: ConsoleWalletQuery["wallet"] | undefined;
  private loaded: string | undefined;

  private get customer(): string {
    return this.route.params.get("customer") ?? "";
  }

  protected override willUpdate(): void {
    if (this.customer !== this.loaded) {
      this.loaded = this.customer;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    if (!this.customer) {
      this.wallet = undefined;
      this.status = "ready";
      return;
    }
    await this.guard(async () => {
      this.wallet = (await request(Wallet, { customerId: this.customer })).wallet;
    });
  }

  private async grant(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? "").trim();
    try {
      const result = (
        await request(Grant, {
          input: {
            customerId: text("customerId"),
            amount: text("amount"),
            currency: text("currency") || null,
            reason: text("reason") || null,
            purchased: form.get("purchased") === "on",
          },
        })
      ).grantCredits;
      if (result.__typename === "Wallet") {
        this.notice = `Granted ${text("amount")} to ${text("customerId")}.`;
        this.loaded = undefined;
        setParams({ customer: text("customerId") });
        if (this.customer === text("customerId")) await this.load();
      } else {
        this.notice = `Not granted: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.notice = `Not granted: ${message(error)}`;
    }
  }

  override render() {
    const wallet = this.wallet;
    return html`<h1>Credits</h1>
      <form class="panel" aria-label="Grant credits" @submit=${this.grant}>
        <h2>Grant credits</h2>
        <label>Customer ID <input name="customerId" required .value=${this.customer} /></label>
        <label>Amount <input name="amount" inputmode="decimal" required /></label>
        <label>Currency <input name="currency" placeholder="the plan's" maxlength="12" /></label>
        <label>Reason <input name="reason" /></label>
        <label><input type="checkbox" name="purchased" checked /> Purchased (not free)</label>
        <button type="submit">Grant</button>
      </form>
      ${this.renderNotice()}
      <form class="filters" aria-label="Ledger of" @submit=${(e: SubmitEvent) => {
        e.preventDefault();
        setParams({ customer: String(new FormData(e.target as HTMLFormElement).get("customer")) });
      }}>
        <label>Ledger of customer <input name="customer" .value=${this.customer} /></label>
        <button type="submit">Show ledger</button>
      </form>
      ${this.renderState()}
      ${wallet
        ? html`<p>Balance: <strong>${money(wallet.balance, wallet.currency)}</strong></p>
            ${wallet.ledger.edges.length
              ? html`<table aria-label="Ledger">
                  <thead><tr><th scope="col">When</th><th scope="col">Kind</th><th scope="col">Reason</th>
                    <th scope="col" class="num">Amount</th><th scope="col" class="num">Balance after</th></tr></thead>
                  <tbody>
                    ${wallet.ledger.edges.map(
                      ({ node }) => html`<tr>
                        <td>${dateTime(node.createdAt)}</td><td>${node.kind}</td>
                        <td>${node.reason ?? (node.invoiceId ? `invoice ${node.invoiceId}` : "")}</td>
                        <td class="num">${money(node.amount, wallet.currency)}</td>
                        <td class="num">${money(node.balanceAfter, wallet.currency)}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
              : this.empty("No ledger lines yet.")}`
        : this.customer || this.status !== "ready"
          ? nothing
          : this.empty("Pick a customer to see its wallet.")}`;
  }
}
