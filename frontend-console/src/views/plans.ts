// Plans: the list, the builder, a plan's detail; activate, deprecate, assign.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import type { ColumnDef } from "@tanstack/lit-table";
import { message, request } from "../api";
import { date, money, number } from "../format";
import { graphql } from "../gql";
import type { ConsolePlansQuery } from "../gql/graphql";
import { href, navigate } from "../router";
import "../table";
import { View } from "../view";
import "./plan-builder";

const Plans = graphql(`
  query ConsolePlans {
    pricingPlans {
      id
      name
      currency
      status
      isDefault
      createdAt
      billingPeriod {
        interval
        count
      }
      items {
        meterApiName
        priceModel
        includedUnits
      }
      fees
      discounts
      minimumSpend
    }
    meters {
      meterApiName
    }
  }
`);

const Activate = graphql(`
  mutation ConsoleActivatePlan($id: ID!) {
    activatePricingPlan(id: $id) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

const Deprecate = graphql(`
  mutation ConsoleDeprecatePlan($id: ID!) {
    deprecatePricingPlan(id: $id) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

const Assign = graphql(`
  mutation ConsoleAssignFromPlan($input: AssignPricingPlanInput!) {
    assignPricingPlan(input: $input) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

type Plan = ConsolePlansQuery["pricingPlans"][number];

function describe(model: unknown): string {
  const m = model as Record<string, unknown>;
  switch (m.type) {
    case "per_unit":
      return `${m.unitPrice} per unit`;
    case "package":
      return `${m.packagePrice} per ${number(m.packageSize as string)} units`;
    default:
      return String(m.type);
  }
}

@customElement("mf-plans")
export class MfPlans extends View {
  @state() private plans: Plan[] = [];
  @state() private meters: string[] = [];
  @state() private building = false;
  private started = false;

  protected override willUpdate(): void {
    if (!this.started) {
      this.started = true;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    await this.guard(async () => {
      const data = await request(Plans);
      this.plans = data.pricingPlans;
      this.meters = data.meters.map((m) => m.meterApiName);
    });
  }

  private async lifecycle(plan: Plan, activate: boolean): Promise<void> {
    try {
      const result = activate
        ? (await request(Activate, { id: plan.id })).activatePricingPlan
        : (await request(Deprecate, { id: plan.id })).deprecatePricingPlan;
      if (result.__typename === "PricingPlan") {
        this.notice = activate
          ? `${plan.name} is active: its prices are locked and customers can be put on it.`
          : `${plan.name} is deprecated: no new assignments.`;
        await this.load();
      } else {
        this.notice = `${plan.name}: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.notice = `${plan.name}: ${message(error)}`;
    }
  }

  private async assign(plan: Plan, event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const customerId = String(new FormData(event.target as HTMLFormElement).get("customerId"));
    try {
      const result = (await request(Assign, { input: { customerId, planId: plan.id } }))
        .assignPricingPlan;
      this.notice =
        result.__typename === "PlanAssignment"
          ? `${customerId} is on ${plan.name}.`
          : `Not assigned: ${"message" in result ? result.message : "refused"}`;
    } catch (error) {
      this.notice = `Not assigned: ${message(error)}`;
    }
  }

  private columns: ColumnDef<Plan, any>[] = [
    {
      id: "name",
      header: "Name",
      accessorFn: (plan) => plan.name,
      cell: (info) => html`<a href=${href("plans", info.row.original.id)}>${info.getValue()}</a>`,
    },
    {
      id: "status",
      header: "Status",
      accessorFn: (plan) => plan.status,
      cell: (info) =>
        html`<span class="badge ${String(info.getValue()).toLowerCase()}">${info.getValue()}</span>`,
    },
    { id: "currency", header: "Currency", accessorFn: (plan) => plan.currency },
    {
      id: "items",
      header: "Items",
      accessorFn: (plan) =>
        plan.items.map((i) => `${i.meterApiName}: ${describe(i.priceModel)}`).join("; "),
    },
    { id: "created", header: "Created", accessorFn: (p) => p.createdAt, cell: (i) => date(i.getValue()) },
    {
      id: "actions",
      header: "Actions",
      enableSorting: false,
      cell: (info) => this.actions(info.row.original),
    },
  ];

  private actions(plan: Plan) {
    return html`${plan.status === "DRAFT"
      ? html`<button type="button" @click=${() => this.lifecycle(plan, true)}>
          Activate <span class="sr-only">${plan.name}</span>
        </button>`
      : nothing}
    ${plan.status === "ACTIVE"
      ? html`<button type="button" @click=${() => this.lifecycle(plan, false)}>
          Deprecate <span class="sr-only">${plan.name}</span>
        </button>`
      : nothing}`;
  }

  private renderPlan(plan: Plan) {
    return html`<p><a href=${href("plans")}>← Plans</a></p>
      <div class="bar">
        <h1>${plan.name}</h1>
        <span class="badge ${plan.status.toLowerCase()}">${plan.status}</span>
        ${this.actions(plan)}
      </div>
      ${this.renderNotice()}
      <p class="muted">
        ${plan.currency} · every ${plan.billingPeriod.count} ${plan.billingPeriod.interval.toLowerCase()}
        · minimum ${plan.minimumSpend ? money(plan.minimumSpend, plan.currency) : "none"}
      </p>
      <table aria-label="Plan items">
        <thead>
          <tr><th scope="col">Meter</th><th scope="col">Price model</th><th scope="col">Included units</th></tr>
        </thead>
        <tbody>
          ${plan.items.map(
            (item) => html`<tr>
              <td>${item.meterApiName}</td>
              <td><code>${JSON.stringify(item.priceModel)}</code></td>
              <td class="num">${number(item.includedUnits)}</td>
            </tr>`,
          )}
        </tbody>
      </table>
      <h2>Fees and discounts</h2>
      <pre>${JSON.stringify({ fees: plan.fees, discounts: plan.discounts }, null, 2)}</pre>
      ${plan.status === "ACTIVE"
        ? html`<form class="inline" aria-label="Assign plan" @submit=${(e: SubmitEvent) => this.assign(plan, e)}>
            <label>Customer ID <input name="customerId" required /></label>
            <button type="submit">Assign</button>
          </form>`
        : nothing}`;
  }

  override render() {
    if (this.status !== "ready") return this.renderState();
    if (this.route.id) {
      const plan = this.plans.find((p) => p.id === this.route.id);
      return plan ? this.renderPlan(plan) : html`<h1>No plan ${this.route.id}</h1>`;
    }
    return html`<div class="bar">
        <h1>Plans</h1>
        <button type="button" @click=${() => (this.building = !this.building)}>
          ${this.building ? "Close builder" : "New plan"}
        </button>
      </div>
      ${this.building
        ? html`<mf-plan-builder
            .meters=${this.meters}
            @created=${async (e: CustomEvent<string>) => {
              this.building = false;
              this.notice = "Plan created as a draft: activate it to assign customers.";
              await this.load();
              navigate(href("plans", e.detail));
            }}
          ></mf-plan-builder>`
        : nothing}
      ${this.renderNotice()}
      ${this.plans.length
        ? html`<mf-table label="Plans" .columns=${this.columns} .data=${this.plans}
            .rowKey=${(p: Plan) => p.id}></mf-table>`
        : this.empty("No plans yet: build one.")}`;
  }
}
