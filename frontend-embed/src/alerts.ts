// <meterflow-alerts>: recent alerts, live over `alertFired` — when the server has alerts.
import { css, html } from "lit";
import { customElement, property, state } from "lit/decorators.js";
import { GraphQLRequestError } from "./connection";
import { MeterflowElement, theme } from "./base";

interface Alert {
  id: string;
  name: string;
  message: string;
  firedAt: string;
}

@customElement("meterflow-alerts")
export class MeterflowAlerts extends MeterflowElement {
  static override styles = [
    theme,
    css`
      ul {
        list-style: none;
        margin: 0;
        padding: 0;
      }
      li {
        padding: 0.4em 0;
        border-bottom: 1px solid var(--meterflow-border-color, #d0d7de);
      }
    `,
  ];

  /** How many alerts to keep on screen. */
  @property({ type: Number }) max = 10;

  @state() private alerts: Alert[] = [];

  protected override async start(): Promise<void> {
    this.status = "empty";
    this.follow<{ alertFired: Alert }>(
      `subscription($c: String!) { alertFired(customerId: $c) { id name message firedAt } }`,
      { c: this.customerId },
      (d) => {
        this.alerts = [d.alertFired, ...this.alerts].slice(0, this.max);
        this.status = "ready";
      },
    );
  }

  protected override fail(error: unknown): void {
    // A validation error (no such field) means this server has no alerts at all.
    if (
      error instanceof GraphQLRequestError &&
      (error.code === "GRAPHQL_VALIDATION_FAILED" ||
        /Cannot query field|Unknown field|not defined/i.test(error.message))
    ) {
      this.status = "unavailable";
      this.message = "Alerts are not available on this server yet.";
      this.dataset.state = "unavailable";
      return;
    }
    super.fail(error);
  }

  override render() {
    const waiting = this.renderState("No alerts. New ones appear here as they fire.");
    return html`<section aria-label="Alerts">
      <h2>Alerts</h2>
      ${waiting ??
      html`<ul role="log" aria-live="polite" aria-label="Recent alerts">
        ${this.alerts.map(
          (a) => html`<li>
            <strong>${a.name}</strong> — ${a.message}
            <div class="muted"><time datetime=${a.firedAt}>${this.dateTime(a.firedAt)}</time></div>
          </li>`,
        )}
      </ul>`}
    </section>`;
  }
}
