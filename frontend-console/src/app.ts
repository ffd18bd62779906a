// <mf-console>: sign-in, navigation and the current view.
import { LitElement, html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import { AuthError, closeSocket, message, onUnauthorized, request, storeKey, storedKey } from "./api";
import { graphql } from "./gql";
import { current, href, interceptLinks, type Route } from "./router";
import "./views/customers";
import "./views/meters";
import "./views/events";
import "./views/usage";
import "./views/plans";
import "./views/invoices";
import "./views/credits";
import "./views/alerts";
import "./views/webhooks";
import "./views/api-keys";
import "./views/graphql";

const Account = graphql(`
  query ConsoleAccount {
    account {
      id
      name
    }
  }
`);

export const VIEWS: [string, string][] = [
  ["customers", "Customers"],
  ["meters", "Meters"],
  ["events", "Events"],
  ["usage", "Usage"],
  ["plans", "Plans"],
  ["invoices", "Invoices"],
  ["credits", "Credits"],
  ["alerts", "Alerts"],
  ["webhooks", "Webhooks"],
  ["api-keys", "API keys"],
  ["graphql", "GraphQL"],
];

@customElement("mf-console")
export class MfConsole extends LitElement {
  @state() private key = storedKey();
  @state() private account = "";
  @state() private signInError = "";
  @state() private busy = false;
  @state() private route: Route = current();
  private stopListening: (() => void) | undefined;

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  override connectedCallback(): void {
    super.connectedCallback();
    interceptLinks(this);
    window.addEventListener("popstate", this.onRoute);
    window.addEventListener("mf-route", this.onRoute);
    this.stopListening = onUnauthorized((reason) => this.signOut(reason));
    if (this.key) void this.check(this.key);
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    window.removeEventListener("popstate", this.onRoute);
    window.removeEventListener("mf-route", this.onRoute);
    this.stopListening?.();
  }

  private onRoute = () => {
    this.route = current();
  };

  private async check(key: string): Promise<void> {
    this.busy = true;
    try {
      const data = await request(Account, {}, key);
      storeKey(key);
      this.key = key;
      this.account = data.account.name;
      this.signInError = "";
    } catch (error) {
      this.signOut(error instanceof AuthError ? error.message : message(error));
    } finally {
      this.busy = false;
    }
  }

  private signOut(reason = ""): void {
    storeKey("");
    closeSocket();
    this.key = "";
    this.account = "";
    this.signInError = reason;
  }

  private submit(event: SubmitEvent): void {
    event.preventDefault();
    const form = event.target as HTMLFormElement;
    const key = (new FormData(form).get("apiKey") as string | null)?.trim() ?? "";
    if (!key) {
      this.signInError = "Enter an API key.";
      return;
    }
    void this.check(key);
  }

  override render() {
    if (!this.key || !this.account) return this.renderSignIn();
    const view = this.route.view;
    return html`<header class="top">
        <a class="brand" href=${href("customers")}>meterflow</a>
        <span class="account">${this.account}</span>
        <button type="button" class="link" @click=${() => this.signOut()}>Sign out</button>
      </header>
      <div class="layout">
        <nav aria-label="Console">
          <ul>
            ${VIEWS.map(
              ([name, label]) =>
                html`<li>
                  <a href=${href(name)} aria-current=${name === view ? "page" : nothing}>${label}</a>
                </li>`,
            )}
          </ul>
        </nav>
        <main id="main">${this.renderView()}</main>
      </div>`;
  }

  private renderView() {
    const route = this.route;
    switch (route.view) {
      case "customers":
        return html`<mf-customers .route=${route}></mf-customers>`;
      case "meters":
        return html`<mf-meters .route=${route}></mf-meters>`;
      case "events":
        return html`<mf-events .route=${route}></mf-events>`;
      case "usage":
        return html`<mf-usage .route=${route}></mf-usage>`;
      case "plans":
        return html`<mf-plans .route=${route}></mf-plans>`;
      case "invoices":
        return html`<mf-invoices .route=${route}></mf-invoices>`;
      case "credits":
        return html`<mf-credits .route=${route}></mf-credits>`;
      case "alerts":
        return html`<mf-alerts-view .route=${route}></mf-alerts-view>`;
      case "webhooks":
        return html`<mf-webhooks .route=${route}></mf-webhooks>`;
      case "api-keys":
        return html`<mf-api-keys .route=${route}></mf-api-keys>`;
      case "graphql":
        return html`<mf-graphql .route=${route}></mf-graphql>`;
      default:
        return html`<h1>Not found</h1>
          <p>There is no console view “${route.view}”.</p>`;
    }
  }

  private renderSignIn() {
    return html`<main class="sign-in" id="main">
      <h1>meterflow console</h1>
      <form @submit=${this.submit}>
        <label for="api-key">API key</label>
        <input
          id="api-key"
          name="apiKey"
          type="password"
          autocomplete="off"
          spellcheck="false"
          required
        />
        <button type="submit" ?disabled=${this.busy}>Sign in</button>
        ${this.signInError
          ? html`<p class="error" role="alert">${this.signInError}</p>`
          : nothing}
        <p class="hint">
          An admin key of your account (meterflow prints one at first start). It is kept in this
          tab only (sessionStorage) and sent as <code>X-API-Key</code>.
        </p>
      </form>
    </main>`;
  }
}
