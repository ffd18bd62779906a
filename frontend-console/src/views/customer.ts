// One customer: the widgets (invoice, usage chart, wallet, alerts) with a customer session
// token minted for this page, edit, plan assignment, and "Open portal as customer".
import { html, nothing, type PropertyValues } from "lit";
import { customElement, property, state } from "lit/decorators.js";
import { message, request, subscribe } from "../api";
import { dateTime, number } from "../format";
import { graphql } from "../gql";
import type { ConsoleCustomerQuery } from "../gql/graphql";
import { href } from "../router";
import { View, problem } from "../view";
import { loadWidgets } from "../widgets";

const Customer = graphql(`
  query ConsoleCustomer($customerId: String!) {
    customer(customerId: $customerId) {
      customerId
      name
      email
      enabled
      createdAt
      plan {
        id
        name
        items {
          meterApiName
        }
      }
      planAssignments {
        planId
        startTime
        endTime
      }
      currentUsage {
        meterApiName
      }
    }
    pricingPlans(status: ACTIVE) {
      id
      name
    }
  }
`);

const UpdateCustomer = graphql(`
  mutation ConsoleUpdateCustomer($input: UpdateCustomerInput!) {
    updateCustomer(input: $input) {
      __typename
      ... on Error {
        code
        message
      }
    }
  }
`);

const AssignPlan = graphql(`
  mutation ConsoleAssignPlan($input: AssignPricingPlanInput!) {
    assignPricingPlan(input: $input) {
      __typename
      ... on Error {
        code
        message
      }
    }
  }
`);

export const Session = graphql(`
  mutation ConsoleCustomerSession($customerId: String!, $seconds: Int) {
    createCustomerSession(customerId: $customerId, expiresInSeconds: $seconds) {
      __typename
      ... on CustomerSession {
        token
        portalUrl
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

const RecentEvents = graphql(`
  query ConsoleCustomerEvents($customerId: String!) {
    meterEvents(filter: { customerId: $customerId }, first: 20, newestFirst: true) {
      edges {
        node {
          id
          meterApiName
          meterValue
          eventTime
          late
        }
      }
    }
  }
`);

const EventTail = graphql(`
  subscription ConsoleCustomerEventTail {
    meterEventsIngested {
      events {
        id
        customerId
        meterApiName
        meterValue
        eventTime
        late
      }
    }
  }
`);

const SHOWN = 20;

type Data = ConsoleCustomerQuery;
type RecentEvent = { id: string; meterApiName: string; meterValue: string; eventTime: string; late: boolean };

async function mintSession(customerId: string, seconds: number) {
  const result = (await request(Session, { customerId, seconds })).createCustomerSession;
  if (result.__typename !== "CustomerSession") throw new Error(problem(result) || "refused");
  return result;
}

@customElement("mf-customer")
export class MfCustomer extends View {
  @property() customerId = "";
  @state() private data: Data | undefined;
  @state() private token = "";
  @state() private editing = false;
  @state() private events: RecentEvent[] = []; // newest first
  private stop: (() => void) | undefined;

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.stop?.();
  }

  private follow(): void {
    this.stop?.();
    const customerId = this.customerId;
    this.stop = subscribe(
      EventTail,
      {},
      (data) => {
        const fresh = data.meterEventsIngested.events
          .filter((e) => e.customerId === customerId)
          .reverse();
        const known = new Set(this.events.map((e) => e.id));
        const added = fresh.filter((e) => !known.has(e.id));
        if (added.length) this.events = [...added, ...this.events].slice(0, SHOWN);
      },
      () => undefined,
    );
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has("customerId")) void this.load();
  }

  private async load(): Promise<void> {
    this.status = "loading";
    await this.guard(async () => {
      this.data = await request(Customer, { customerId: this.customerId });
      if (this.data.customer) {
        const [session, recent] = await Promise.all([
          mintSession(this.customerId, 3600),
          request(RecentEvents, { customerId: this.customerId }),
          loadWidgets(),
        ]);
        this.token = session.token;
        this.events = recent.meterEvents.edges.map((edge) => edge.node);
        this.follow();
      }
    });
  }

  private async save(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    try {
      const result = (
        await request(UpdateCustomer, {
          input: {
            customerId: this.customerId,
            name: String(form.get("name") ?? ""),
            email: String(form.get("email") ?? ""),
            enabled: form.get("enabled") === "on",
          },
        })
      ).updateCustomer;
      this.notice = problem(result) ? `Not saved: ${problem(result)}` : "Saved.";
      if (!problem(result)) {
        this.editing = false;
        await this.load();
      }
    } catch (error) {
      this.notice = `Not saved: ${message(error)}`;
    }
  }

  private async assign(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const planId = String(new FormData(event.target as HTMLFormElement).get("planId") ?? "");
    try {
      const result = (
        await request(AssignPlan, { input: { customerId: this.customerId, planId } })
      ).assignPricingPlan;
      this.notice = problem(result) ? `Not assigned: ${problem(result)}` : "Plan assigned.";
      if (!problem(result)) await this.load();
    } catch (error) {
      this.notice = `Not assigned: ${message(error)}`;
    }
  }

  private async openPortal(): Promise<void> {
    try {
      const session = await mintSession(this.customerId, 3600);
      window.open(session.portalUrl, "_blank", "noopener");
    } catch (error) {
      this.notice = `No portal: ${message(error)}`;
    }
  }

  override render() {
    const customer = this.data?.customer;
    const back = html`<p><a href=${href("customers")}>← Customers</a></p>`;
    if (this.status !== "ready") return html`${back}${this.renderState()}`;
    if (!customer) return html`${back}<h1>No customer “${this.customerId}”</h1>`;
    const meter =
      customer.plan?.items[0]?.meterApiName ?? customer.currentUsage[0]?.meterApiName ?? "";
    return html`${back}
      <div class="bar">
        <h1>${customer.name || customer.customerId}</h1>
        <button type="button" @click=${() => (this.editing = !this.editing)}>
          ${this.editing ? "Cancel" : "Edit customer"}
        </button>
        <button type="button" @click=${this.openPortal}>Open portal as customer</button>
        <a class="button" href=${href("events", "", { customer: customer.customerId })}
          >Events</a
        >
      </div>
      <p class="muted">
        ${customer.customerId} · ${customer.email ?? "no email"} ·
        ${customer.enabled ? "enabled" : "disabled"} · since ${dateTime(customer.createdAt)}
      </p>
      ${this.renderNotice()}
      ${this.editing
        ? html`<form class="panel" aria-label="Edit customer" @submit=${this.save}>
            <label>Name <input name="name" .value=${customer.name} /></label>
            <label>Email <input name="email" type="email" .value=${customer.email ?? ""} /></label>
            <label
              ><input type="checkbox" name="enabled" ?checked=${customer.enabled} /> Enabled</label
            >
            <button type="submit">Save</button>
          </form>`
        : nothing}
      <section class="panel" aria-label="Plan">
        <h2>Plan</h2>
        <p>
          ${customer.plan
            ? html`On <a href=${href("plans", customer.plan.id)}>${customer.plan.name}</a>`
            : "No plan covers now."}
        </p>
        <form class="inline" @submit=${this.assign}>
          <label
            >Assign plan
            <select name="planId" required>
              ${this.data!.pricingPlans.map(
                (plan) => html`<option value=${plan.id}>${plan.name}</option>`,
              )}
            </select></label
          >
          <button type="submit" ?disabled=${!this.data!.pricingPlans.length}>Assign</button>
        </form>
      </section>
      <div class="widgets">
        <meterflow-invoice token=${this.token}></meterflow-invoice>
        <meterflow-wallet token=${this.token}></meterflow-wallet>
        ${meter
          ? html`<meterflow-usage class="wide" token=${this.token} meter=${meter}></meterflow-usage>`
          : nothing}
        <meterflow-alerts token=${this.token}></meterflow-alerts>
      </div>
      <section class="panel" aria-label="Recent events">
        <h2>Latest events, live</h2>
        <p><a href=${href("events", "", { customer: customer.customerId })}>Every event</a></p>
        ${this.events.length
          ? html`<table aria-label="Recent events of ${customer.customerId}">
              <thead>
                <tr>
                  <th scope="col">#</th><th scope="col">Meter</th>
                  <th scope="col" class="num">Value</th><th scope="col">Event time</th>
                  <th scope="col">Late</th>
                </tr>
              </thead>
              <tbody>
                ${this.events.map(
                  (e) => html`<tr>
                    <td>${e.id}</td><td>${e.meterApiName}</td>
                    <td class="num">${number(e.meterValue)}</td><td>${dateTime(e.eventTime)}</td>
                    <td>${e.late ? "late" : ""}</td>
                  </tr>`,
                )}
              </tbody>
            </table>`
          : this.empty("No events yet: they show here as they are ingested.")}
      </section>`;
  }
}
