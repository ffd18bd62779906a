// What every widget shares: attributes, the connection, states, formatting, theme.
import { LitElement, css, html, type PropertyValues, type TemplateResult } from "lit";
import { property, state } from "lit/decorators.js";
import { GraphQLRequestError, TokenError, acquire, release, type Connection } from "./connection";

export type Status = "idle" | "loading" | "ready" | "empty" | "error" | "expired" | "unavailable";

/**
 * Theme (CSS custom properties, set them on the element or any ancestor):
 *   --meterflow-font-family, --meterflow-font-size, --meterflow-text-color,
 *   --meterflow-muted-color, --meterflow-background, --meterflow-border-color,
 *   --meterflow-accent-color, --meterflow-error-color, --meterflow-radius,
 *   --meterflow-padding, --meterflow-series-colors (comma-separated, for charts).
 */
export const theme = css`
  :host {
    display: block;
    box-sizing: border-box;
    font-family: var(
      --meterflow-font-family,
      system-ui,
      -apple-system,
      "Segoe UI",
      Roboto,
      sans-serif
    );
    font-size: var(--meterflow-font-size, 14px);
    color: var(--meterflow-text-color, #1f2328);
    background: var(--meterflow-background, #ffffff);
    border: 1px solid var(--meterflow-border-color, #d0d7de);
    border-radius: var(--meterflow-radius, 8px);
    padding: var(--meterflow-padding, 16px);
    line-height: 1.4;
  }
  :host([hidden]) {
    display: none;
  }
  h2 {
    font-size: 1em;
    font-weight: 600;
    margin: 0 0 0.75em;
  }
  .muted {
    color: var(--meterflow-muted-color, #57606a);
  }
  .big {
    font-size: 2em;
    font-weight: 600;
    font-variant-numeric: tabular-nums;
  }
  .state {
    padding: 0.5em 0;
  }
  .state.error,
  .state.expired {
    color: var(--meterflow-error-color, #b42318);
  }
  table {
    width: 100%;
    border-collapse: collapse;
  }
  th,
  td {
    text-align: left;
    padding: 0.35em 0.25em;
    border-bottom: 1px solid var(--meterflow-border-color, #d0d7de);
  }
  th {
    font-weight: 600;
    color: var(--meterflow-muted-color, #57606a);
  }
  td.num,
  th.num {
    text-align: right;
    font-variant-numeric: tabular-nums;
  }
  select {
    font: inherit;
    color: inherit;
    background: var(--meterflow-background, #ffffff);
    border: 1px solid var(--meterflow-border-color, #d0d7de);
    border-radius: 4px;
    padding: 0.2em 0.4em;
  }
  select:focus-visible {
    outline: 2px solid var(--meterflow-accent-color, #0550ae);
    outline-offset: 1px;
  }
  .sr-only {
    position: absolute;
    width: 1px;
    height: 1px;
    overflow: hidden;
    clip: rect(0 0 0 0);
    white-space: nowrap;
  }
`;

export abstract class MeterflowElement extends LitElement {
  /** meterflow's base URL, e.g. https://meterflow.example.com */
  @property({ attribute: "api-url" }) apiUrl = "";
  /** A customer session token (never an API key). */
  @property() token = "";
  /** BCP 47 locale for numbers and dates; default: the browser's. */
  @property() locale: string | undefined = undefined;

  @state() protected status: Status = "idle";
  @state() protected message = "";

  protected connection: Connection | undefined;
  protected customerId = "";
  private unsubscribers: (() => void)[] = [];
  private generation = 0;

  protected abstract start(): Promise<void>;

  override connectedCallback(): void {
    super.connectedCallback();
    this.restart();
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.stop();
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if ((changed.has("apiUrl") || changed.has("token")) && this.isConnected) {
      const before = this.connection;
      if (!before || before.apiUrl !== this.baseUrl() || before.token !== this.token) {
        this.restart();
      }
    }
  }

  protected baseUrl(): string {
    return (this.apiUrl || window.location.origin).replace(/\/+$/, "");
  }

  private stop(): void {
    this.generation += 1;
    for (const unsubscribe of this.unsubscribers.splice(0)) unsubscribe();
    if (this.connection) release(this.connection);
    this.connection = undefined;
  }

  protected restart(): void {
    this.stop();
    if (!this.token) {
      this.status = "error";
      this.message = "No session token: set the token attribute.";
      return;
    }
    this.status = "loading";
    const generation = this.generation;
    this.connection = acquire(this.baseUrl(), this.token);
    this.connection.customerId
      .then((id) => {
        if (generation !== this.generation) return;
        this.customerId = id;
        return this.start();
      })
      .catch((error: unknown) => {
        if (generation === this.generation) this.fail(error);
      });
  }

  /** Subscribe while the element lives; errors land in fail(). */
  protected follow<T>(query: string, variables: Record<string, unknown>, next: (d: T) => void) {
    if (!this.connection) return;
    const generation = this.generation;
    this.unsubscribers.push(
      this.connection.subscribe<T>(
        query,
        variables,
        (data) => {
          if (generation === this.generation) next(data);
        },
        (error) => {
          if (generation === this.generation) this.fail(error);
        },
      ),
    );
  }

  protected fail(error: unknown): void {
    if (error instanceof TokenError) {
      this.status = "expired";
      this.message = `Your session has ended (${error.message}). Reload the page with a new link.`;
    } else if (error instanceof GraphQLRequestError && error.code === "FORBIDDEN") {
      this.status = "error";
      this.message = "This session token may not see that.";
    } else {
      this.status = "error";
      this.message = error instanceof Error ? error.message : String(error);
    }
  }

  /** Loading, error and expired states; undefined when the widget should draw itself. */
  protected renderState(empty: string): TemplateResult | undefined {
    switch (this.status) {
      case "idle":
      case "loading":
        return html`<div class="state loading muted" role="status" aria-live="polite">
          Loading…
        </div>`;
      case "expired":
        return html`<div class="state expired" role="alert" data-state="expired">
          ${this.message}
        </div>`;
      case "error":
        return html`<div class="state error" role="alert" data-state="error">
          Something went wrong: ${this.message}
        </div>`;
      case "empty":
        return html`<div class="state empty muted" role="status" data-state="empty">
          ${empty}
        </div>`;
      case "unavailable":
        return html`<div class="state unavailable muted" role="status" data-state="unavailable">
          ${this.message}
        </div>`;
      default:
        return undefined;
    }
  }

  protected money(amount: string | number, currency: string): string {
    const value = typeof amount === "number" ? amount : Number(amount);
    try {
      return new Intl.NumberFormat(this.locale, { style: "currency", currency }).format(value);
    } catch {
      // Not an ISO 4217 code (e.g. a credit unit): a plain number and the code.
      return `${this.number(value)} ${currency}`;
    }
  }

  protected number(amount: string | number, digits = 6): string {
    const value = typeof amount === "number" ? amount : Number(amount);
    return new Intl.NumberFormat(this.locale, { maximumFractionDigits: digits }).format(value);
  }

  protected date(iso: string, options?: Intl.DateTimeFormatOptions): string {
    return new Intl.DateTimeFormat(this.locale, options ?? { dateStyle: "medium" }).format(
      new Date(iso),
    );
  }

  protected dateTime(iso: string): string {
    return this.date(iso, { dateStyle: "medium", timeStyle: "short" });
  }
}

/** Run `fn` at most once per `ms`, the last call winning (for re-queries on live updates). */
export function throttle(fn: () => void, ms: number): () => void {
  let timer: ReturnType<typeof setTimeout> | undefined;
  let last = 0;
  return () => {
    if (timer) return;
    const wait = Math.max(0, last + ms - Date.now());
    timer = setTimeout(() => {
      timer = undefined;
      last = Date.now();
      fn();
    }, wait);
  };
}
