// Alerts: rules with their channels (create, disable); fired alerts with their delivery logs,
// live through alertFired.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import { message, request, subscribe } from "../api";
import { dateTime, money, number } from "../format";
import { graphql } from "../gql";
import type {
  AlertChannelType,
  AlertCondition,
  AlertSubject,
  ConsoleAlertsQuery,
  Grouping,
} from "../gql/graphql";
import { View } from "../view";

graphql(`
  fragment ConsoleAlertEvent on AlertEvent {
    id
    name
    customerId
    value
    currency
    message
    firedAt
    deliveries {
      channel
      target
      status
      attempts
      lastError
    }
  }
`);

const Alerts = graphql(`
  query ConsoleAlerts {
    alertRules {
      id
      name
      subject
      condition
      threshold
      range
      customerId
      enabled
      channels {
        type
        target
      }
    }
    alertEvents(first: 100) {
      ...ConsoleAlertEvent
    }
  }
`);

const Fired = graphql(`
  subscription ConsoleAlertFired {
    alertFired {
      ...ConsoleAlertEvent
    }
  }
`);

const CreateRule = graphql(`
  mutation ConsoleCreateAlertRule($input: CreateAlertRuleInput!) {
    createAlertRule(input: $input) {
      __typename
      ... on AlertRule {
        channels {
          signingSecret
        }
      }
      ... on Error {
        message
      }
    }
  }
`);

const DeleteRule = graphql(`
  mutation ConsoleDeleteAlertRule($id: ID!) {
    deleteAlertRule(id: $id) {
      __typename
    }
  }
`);

type Data = ConsoleAlertsQuery;

@customElement("mf-alerts-view")
export class MfAlertsView extends View {
  @state() private data: Data | undefined;
  private started = false;
  private stop: (() => void) | undefined;

  protected override willUpdate(): void {
    if (this.started) return;
    this.started = true;
    void this.load();
    this.stop = subscribe(
      Fired,
      {},
      (fired) => {
        if (this.data) {
          this.data = { ...this.data, alertEvents: [fired.alertFired, ...this.data.alertEvents] };
        }
      },
      () => undefined,
    );
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.stop?.();
  }

  private async load(): Promise<void> {
    await this.guard(async () => {
      this.data = await request(Alerts);
    });
  }

  private async create(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? "").trim();
    try {
      const result = (
        await request(CreateRule, {
          input: {
            name: text("name"),
            subject: text("subject") as AlertSubject,
            condition: text("condition") as AlertCondition,
            threshold: text("threshold"),
            range: text("range") as Grouping,
            meterApiName: text("meter") || null,
            customerId: text("customer") || null,
            channels: text("target")
              ? [{ type: text("channel") as AlertChannelType, target: text("target") }]
              : [],
          },
        })
      ).createAlertRule;
      if (result.__typename === "AlertRule") {
        const secret = result.channels.find((c) => c.signingSecret)?.signingSecret;
        this.notice = secret
          ? `Rule created. Its webhook signing secret, shown once: ${secret}`
          : "Rule created.";
        await this.load();
      } else {
        this.notice = `Not created: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.notice = `Not created: ${message(error)}`;
    }
  }

  private async disable(id: string): Promise<void> {
    try {
      await request(DeleteRule, { id });
      this.notice = "Rule disabled; its history stays.";
      await this.load();
    } catch (error) {
      this.notice = message(error);
    }
  }

  override render() {
    const data = this.data;
    const select = (name: string, options: string[]) =>
      html`<select name=${name}>${options.map((o) => html`<option>${o}</option>`)}</select>`;
    return html`<h1>Alerts</h1>
      <form class="panel" aria-label="Create alert rule" @submit=${this.create}>
        <h2>New rule</h2>
        <div class="row">
          <label>Name <input name="name" required /></label>
          <label>Subject ${select("subject", ["USAGE", "COST", "BALANCE"])}</label>
          <label>Condition ${select("condition", ["GREATER_THAN", "LESS_THAN", "PERCENT_CHANGE"])}</label>
          <label>Threshold <input name="threshold" inputmode="decimal" required /></label>
          <label>Range ${select("range", ["DAY", "HOUR", "WEEK", "MONTH"])}</label>
          <label>Meter <input name="meter" /></label>
          <label>Customer <input name="customer" placeholder="every customer" /></label>
          <label>Channel ${select("channel", ["WEBHOOK", "SLACK", "EMAIL"])}</label>
          <label>Target <input name="target" placeholder="https://… or email" /></label>
        </div>
        <button type="submit">Create rule</button>
      </form>
      ${this.renderNotice()} ${this.renderState()}
      ${data
        ? html`<h2>Rules</h2>
            ${data.alertRules.length
              ? html`<table aria-label="Alert rules">
                  <thead><tr><th scope="col">Name</th><th scope="col">When</th><th scope="col">Customer</th>
                    <th scope="col">Channels</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
                  <tbody>
                    ${data.alertRules.map(
                      (rule) => html`<tr>
                        <td>${rule.name}</td>
                        <td>${rule.subject} ${rule.condition} ${number(rule.threshold)} per ${rule.range}</td>
                        <td>${rule.customerId ?? "every customer"}</td>
                        <td>${rule.channels.map((c) => `${c.type} ${c.target}`).join(", ") || "none"}</td>
                        <td>${rule.enabled ? "enabled" : "disabled"}</td>
                        <td>${rule.enabled
                          ? html`<button type="button" @click=${() => this.disable(rule.id)}>
                              Disable <span class="sr-only">${rule.name}</span></button>`
                          : nothing}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
              : this.empty("No rules.")}
            <h2>Fired</h2>
            ${data.alertEvents.length
              ? html`<table aria-label="Fired alerts">
                  <thead><tr><th scope="col">When</th><th scope="col">Rule</th><th scope="col">Customer</th>
                    <th scope="col" class="num">Value</th><th scope="col">Message</th><th scope="col">Deliveries</th></tr></thead>
                  <tbody>
                    ${data.alertEvents.map(
                      (e) => html`<tr>
                        <td>${dateTime(e.firedAt)}</td><td>${e.name}</td><td>${e.customerId}</td>
                        <td class="num">${e.currency ? money(e.value, e.currency) : number(e.value)}</td>
                        <td>${e.message}</td>
                        <td>${(e.deliveries ?? []).map(
                          (d) => html`<div>${d.channel} ${d.target}: ${d.status} after ${d.attempts}
                            ${d.lastError ? `(${d.lastError})` : ""}</div>`,
                        )}</td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
              : this.empty("No alerts fired yet.")}`
        : nothing}`;
  }
}
