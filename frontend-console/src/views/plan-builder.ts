// The plan builder: product items with any price model, included units, a fee, a minimum and a
// discount, and a live preview of each item's amount priced by the server (previewPrice).
import { LitElement, html, nothing } from "lit";
import { customElement, property, state } from "lit/decorators.js";
import { message, request } from "../api";
import { money, number } from "../format";
import { graphql } from "../gql";
import type { BillingInterval, CreatePricingPlanInput } from "../gql/graphql";

const Preview = graphql(`
  query ConsolePreviewPrice(
    $priceModel: JSON!
    $quantity: Decimal!
    $includedUnits: Decimal
    $currency: String!
    $dimensionValues: [String!]
  ) {
    previewPrice(
      priceModel: $priceModel
      quantity: $quantity
      includedUnits: $includedUnits
      currency: $currency
      dimensionValues: $dimensionValues
    ) {
      __typename
      ... on PricePreview {
        amount
        currency
        billableUnits
        tiers {
          tier
          quantity
          unitPrice
          amount
        }
      }
      ... on ValidationError {
        message
      }
    }
  }
`);

const CreatePlan = graphql(`
  mutation ConsoleCreatePlan($input: CreatePricingPlanInput!) {
    createPricingPlan(input: $input) {
      __typename
      ... on PricingPlan {
        id
      }
      ... on Error {
        message
      }
    }
  }
`);

export const MODELS: [string, string][] = [
  ["per_unit", "Per unit"],
  ["package", "Package (block)"],
  ["graduated", "Graduated tiers"],
  ["volume", "Volume tiers"],
  ["percentage", "Percentage"],
  ["dimension", "By dimension (JSON)"],
];

interface Item {
  meter: string;
  type: string;
  fields: Record<string, string>;
  included: string;
  quantity: string;
  preview: string;
}

function tiers(text: string) {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean)
    .map((line) => {
      const [upTo, unitPrice, flatFee] = line.split(",").map((part) => part.trim());
      return { upTo: upTo ? upTo : null, unitPrice: unitPrice ?? "0", flatFee: flatFee || "0" };
    });
}

/** The priceModel JSON the API takes, from the builder's fields. */
export function priceModel(item: Item): unknown {
  const f = item.fields;
  switch (item.type) {
    case "per_unit":
      return { type: "per_unit", unitPrice: f.unitPrice ?? "" };
    case "package":
      return {
        type: "package",
        packageSize: f.packageSize ?? "",
        packagePrice: f.packagePrice ?? "",
        allowPartial: f.allowPartial === "on",
      };
    case "graduated":
    case "volume":
      return { type: item.type, tiers: tiers(f.tiers ?? "") };
    case "percentage":
      return {
        type: "percentage",
        percent: f.percent ?? "",
        minPerUnit: f.minPerUnit || null,
        maxPerUnit: f.maxPerUnit || null,
      };
    default:
      return JSON.parse(f.json || "{}");
  }
}

function blank(meter = ""): Item {
  return { meter, type: "per_unit", fields: {}, included: "", quantity: "", preview: "" };
}

@customElement("mf-plan-builder")
export class MfPlanBuilder extends LitElement {
  @property({ attribute: false }) meters: string[] = [];
  @state() private items: Item[] = [blank()];
  @state() private currency = "USD";
  @state() private error = "";
  private timers = new Map<number, number>();

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  private edit(index: number, change: Partial<Item>, field?: [string, string]): void {
    const items = [...this.items];
    const item = { ...items[index], ...change };
    if (field) item.fields = { ...item.fields, [field[0]]: field[1] };
    items[index] = item;
    this.items = items;
    window.clearTimeout(this.timers.get(index));
    this.timers.set(index, window.setTimeout(() => void this.preview(index), 250));
  }

  private async preview(index: number): Promise<void> {
    const item = this.items[index];
    if (!item?.quantity) return;
    let text: string;
    try {
      const values = (item.fields.values ?? "").split(",").map((v) => v.trim()).filter(Boolean);
      const result = (
        await request(Preview, {
          priceModel: priceModel(item),
          quantity: item.quantity,
          includedUnits: item.included || null,
          currency: this.currency,
          dimensionValues: values.length ? values : null,
        })
      ).previewPrice;
      text =
        result.__typename === "PricePreview"
          ? `${money(result.amount, result.currency)} for ${number(item.quantity)} units ` +
            `(${number(result.billableUnits)} billable` +
            (result.tiers.length
              ? `; ${result.tiers.map((t) => `tier ${t.tier}: ${number(t.quantity)} × ${number(t.unitPrice)}`).join(", ")}`
              : "") +
            ")"
          : `Cannot price: ${result.message}`;
    } catch (error) {
      text = `Cannot price: ${message(error)}`;
    }
    const items = [...this.items];
    if (items[index]) {
      items[index] = { ...items[index], preview: text };
      this.items = items;
    }
  }

  private async submit(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    const text = (name: string) => String(form.get(name) ?? "").trim();
    let input: CreatePricingPlanInput;
    try {
      input = {
        name: text("name"),
        currency: this.currency,
        billingPeriod: { interval: text("interval") as BillingInterval, count: 1 },
        items: this.items.map((item) => ({
          meterApiName: item.meter,
          priceModel: priceModel(item),
          includedUnits: item.included || null,
        })),
        fees: text("feeName") ? [{ name: text("feeName"), amount: text("feeAmount") }] : null,
        minimumSpend: text("minimumSpend") || null,
        discounts: text("discountName")
          ? [
              {
                name: text("discountName"),
                kind: text("discountKind") === "FIXED" ? "FIXED" : "PERCENT",
                value: text("discountValue"),
              },
            ]
          : null,
      };
    } catch (error) {
      this.error = `Not created: ${message(error)}`;
      return;
    }
    try {
      const result = (await request(CreatePlan, { input })).createPricingPlan;
      if (result.__typename === "PricingPlan") {
        this.error = "";
        this.dispatchEvent(new CustomEvent("created", { detail: result.id, bubbles: true }));
      } else {
        this.error = `Not created: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.error = `Not created: ${message(error)}`;
    }
  }

  private renderFields(item: Item, index: number) {
    const field = (name: string, label: string, extra = "") =>
      html`<label
        >${label}
        <input
          name=${`${name}-${index}`}
          inputmode="decimal"
          placeholder=${extra}
          .value=${item.fields[name] ?? ""}
          @input=${(e: Event) =>
            this.edit(index, {}, [name, (e.target as HTMLInputElement).value])}
      /></label>`;
    switch (item.type) {
      case "per_unit":
        return field("unitPrice", "Unit price");
      case "package":
        return html`${field("packageSize", "Package size")} ${field("packagePrice", "Package price")}
          <label
            ><input
              type="checkbox"
              .checked=${item.fields.allowPartial === "on"}
              @change=${(e: Event) =>
                this.edit(index, {}, [
                  "allowPartial",
                  (e.target as HTMLInputElement).checked ? "on" : "",
                ])}
            />
            Bill partial packages</label
          >`;
      case "graduated":
      case "volume":
        return html`<label
          >Tiers, one per line: up to, unit price, flat fee (last line: empty “up to”)
          <textarea
            rows="4"
            .value=${item.fields.tiers ?? ""}
            placeholder=${"1000,0.01,0\n,0.005,0"}
            @input=${(e: Event) =>
              this.edit(index, {}, ["tiers", (e.target as HTMLTextAreaElement).value])}
          ></textarea>
        </label>`;
      case "percentage":
        return html`${field("percent", "Percent")} ${field("minPerUnit", "Minimum per event")}
        ${field("maxPerUnit", "Maximum per event")}`;
      default:
        return html`<label
            >Price model JSON
            <textarea
              rows="6"
              .value=${item.fields.json ?? ""}
              placeholder='{"type": "dimension", "dimensions": ["region"], "prices": [{"values": ["us"], "model": {"type": "per_unit", "unitPrice": "0.01"}}]}'
              @input=${(e: Event) =>
                this.edit(index, {}, ["json", (e.target as HTMLTextAreaElement).value])}
            ></textarea></label
          >${field("values", "Preview dimension values (comma-separated)")}`;
    }
  }

  override render() {
    return html`<form class="panel builder" aria-label="Plan builder" @submit=${this.submit}>
      <h2>New plan</h2>
      <div class="row">
        <label>Plan name <input name="name" required /></label>
        <label
          >Currency
          <input
            name="currency"
            .value=${this.currency}
            maxlength="3"
            @input=${(e: Event) => (this.currency = (e.target as HTMLInputElement).value.toUpperCase())}
        /></label>
        <label
          >Billing period
          <select name="interval">
            <option value="MONTH" selected>Monthly</option>
            <option value="WEEK">Weekly</option>
            <option value="DAY">Daily</option>
            <option value="YEAR">Yearly</option>
          </select></label
        >
      </div>
      ${this.items.map(
        (item, index) => html`<fieldset class="item">
          <legend>Product item ${index + 1}</legend>
          <div class="row">
            <label
              >Meter
              <input
                name=${`meter-${index}`}
                list="builder-meters"
                required
                .value=${item.meter}
                @input=${(e: Event) => this.edit(index, { meter: (e.target as HTMLInputElement).value })}
            /></label>
            <label
              >Price model
              <select
                name=${`model-${index}`}
                @change=${(e: Event) =>
                  this.edit(index, { type: (e.target as HTMLSelectElement).value })}
              >
                ${MODELS.map(
                  ([value, label]) =>
                    html`<option value=${value} ?selected=${item.type === value}>${label}</option>`,
                )}
              </select></label
            >
            <label
              >Included units
              <input
                name=${`included-${index}`}
                inputmode="decimal"
                .value=${item.included}
                @input=${(e: Event) =>
                  this.edit(index, { included: (e.target as HTMLInputElement).value })}
            /></label>
          </div>
          <div class="row">${this.renderFields(item, index)}</div>
          <div class="row preview">
            <label
              >Preview quantity
              <input
                name=${`quantity-${index}`}
                inputmode="decimal"
                .value=${item.quantity}
                @input=${(e: Event) =>
                  this.edit(index, { quantity: (e.target as HTMLInputElement).value })}
            /></label>
            <output aria-live="polite" class="preview-amount">${item.preview}</output>
          </div>
          ${this.items.length > 1
            ? html`<button
                type="button"
                @click=${() => (this.items = this.items.filter((_, i) => i !== index))}
              >
                Remove item ${index + 1}
              </button>`
            : nothing}
        </fieldset>`,
      )}
      <datalist id="builder-meters">
        ${this.meters.map((meter) => html`<option value=${meter}></option>`)}
      </datalist>
      <button type="button" @click=${() => (this.items = [...this.items, blank()])}>
        Add product item
      </button>
      <fieldset>
        <legend>Fees, minimum and discount (optional)</legend>
        <div class="row">
          <label>Fee name <input name="feeName" /></label>
          <label>Fee amount <input name="feeAmount" inputmode="decimal" /></label>
          <label>Minimum spend <input name="minimumSpend" inputmode="decimal" /></label>
          <label>Discount name <input name="discountName" /></label>
          <label
            >Discount kind
            <select name="discountKind">
              <option value="PERCENT">Percent</option>
              <option value="FIXED">Fixed amount</option>
            </select></label
          >
          <label>Discount value <input name="discountValue" inputmode="decimal" /></label>
        </div>
      </fieldset>
      <button type="submit">Create plan</button>
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
    </form>`;
  }
}
