// The Ingest panel: send test events (N copies of one, or a JSON list) through
// ingestMeterEvents, in batches under the API's 10,000, and show every event's outcome.
import { LitElement, html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import type { ColumnDef } from "@tanstack/lit-table";
import { message, request } from "../api";
import { number } from "../format";
import { graphql } from "../gql";
import type { EventOutcome, MeterEventInput } from "../gql/graphql";
import "../table";

const Ingest = graphql(`
  mutation ConsoleIngest($events: [MeterEventInput!]!) {
    ingestMeterEvents(events: $events) {
      accepted
      duplicates
      rejected
      outcomes {
        index
        uniqueId
        status
        code
        message
      }
    }
  }
`);

const BATCH = 5_000;
const MAX_EVENTS = 100_000;

interface Outcome {
  index: number;
  uniqueId?: string | null;
  status: EventOutcome;
  code?: string | null;
  message?: string | null;
}

function uuid(): string {
  return crypto.randomUUID();
}

@customElement("mf-ingest")
export class MfIngest extends LitElement {
  @state() private mode: "form" | "json" = "form";
  @state() private sending = "";
  @state() private error = "";
  @state() private totals: { accepted: number; duplicates: number; rejected: number } | undefined;
  @state() private outcomes: Outcome[] = [];

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  private build(form: FormData): MeterEventInput[] {
    if (this.mode === "json") {
      const parsed: unknown = JSON.parse(String(form.get("json") ?? "[]"));
      const list = Array.isArray(parsed) ? parsed : [parsed];
      return list as MeterEventInput[];
    }
    const count = Number(form.get("count") ?? 1);
    if (!Number.isInteger(count) || count < 1 || count > MAX_EVENTS) {
      throw new Error(`the count must be a whole number from 1 to ${MAX_EVENTS}`);
    }
    const dimensions: Record<string, string> = {};
    for (const pair of String(form.get("dimensions") ?? "").split(",")) {
      const [key, ...rest] = pair.split("=");
      if (key?.trim() && rest.length) dimensions[key.trim()] = rest.join("=").trim();
    }
    const base = {
      meterApiName: String(form.get("meter") ?? "").trim(),
      customerId: String(form.get("customer") ?? "").trim(),
      meterValue: String(form.get("value") ?? "1").trim(),
      meterTimeInMillis: String(Date.now()),
      dimensions: Object.keys(dimensions).length ? dimensions : null,
    };
    return Array.from({ length: count }, () => ({ ...base, uniqueId: uuid() }));
  }

  private async send(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    this.error = "";
    let events: MeterEventInput[];
    try {
      events = this.build(new FormData(event.target as HTMLFormElement));
    } catch (error) {
      this.error = `Nothing sent: ${message(error)}`;
      return;
    }
    const totals = { accepted: 0, duplicates: 0, rejected: 0 };
    const outcomes: Outcome[] = [];
    this.totals = undefined;
    this.outcomes = [];
    try {
      for (let start = 0; start < events.length; start += BATCH) {
        this.sending = `Sending ${number(Math.min(start + BATCH, events.length))} of ${number(events.length)}…`;
        const batch = events.slice(start, start + BATCH);
        const result = (await request(Ingest, { events: batch })).ingestMeterEvents;
        totals.accepted += result.accepted;
        totals.duplicates += result.duplicates;
        totals.rejected += result.rejected;
        for (const outcome of result.outcomes) {
          outcomes.push({ ...outcome, index: outcome.index + start });
        }
      }
    } catch (error) {
      this.error = `Stopped after ${number(outcomes.length)} events: ${message(error)}`;
    } finally {
      this.sending = "";
      this.totals = totals;
      this.outcomes = outcomes;
    }
  }

  private columns: ColumnDef<Outcome, any>[] = [
    { id: "index", header: "#", meta: { num: true }, accessorFn: (row) => row.index },
    { id: "uniqueId", header: "Unique ID", accessorFn: (row) => row.uniqueId ?? "" },
    {
      id: "status",
      header: "Outcome",
      accessorFn: (row) => row.status,
      cell: (info) =>
        html`<span class="badge ${String(info.getValue()).toLowerCase()}">${info.getValue()}</span>`,
    },
    {
      id: "message",
      header: "Why",
      accessorFn: (row) => (row.code ? `${row.code}: ${row.message ?? ""}` : ""),
    },
  ];

  override render() {
    return html`<section class="panel ingest" aria-label="Ingest">
      <h2>Ingest test events</h2>
      <div class="segmented" role="group" aria-label="Ingest input">
        <button type="button" aria-pressed=${this.mode === "form"} @click=${() => (this.mode = "form")}>
          Repeat one event
        </button>
        <button type="button" aria-pressed=${this.mode === "json"} @click=${() => (this.mode = "json")}>
          JSON
        </button>
      </div>
      <form @submit=${this.send} aria-label="Ingest events">
        ${this.mode === "form"
          ? html`<label>Meter API name <input name="meter" required /></label>
              <label>Customer ID <input name="customer" required /></label>
              <label>Value <input name="value" value="1" inputmode="decimal" required /></label>
              <label>Count <input name="count" type="number" min="1" value="1" required /></label>
              <label
                >Dimensions (key=value, comma-separated) <input name="dimensions" placeholder="region=us"
              /></label>`
          : html`<label
              >Events (a JSON list of MeterEventInput)
              <textarea name="json" rows="8" required>
[{"meterApiName": "api-calls", "customerId": "acme", "meterValue": 1, "meterTimeInMillis": ${Date.now()}}]</textarea
              ></label
            >`}
        <button type="submit" ?disabled=${!!this.sending}>Send events</button>
      </form>
      ${this.sending ? html`<p role="status">${this.sending}</p>` : nothing}
      ${this.error ? html`<p class="error" role="alert">${this.error}</p>` : nothing}
      ${this.totals
        ? html`<p class="ingest-result" role="status">
              ${number(this.totals.accepted)} accepted, ${number(this.totals.duplicates)}
              duplicates, ${number(this.totals.rejected)} rejected
            </p>
            <mf-table label="Outcomes" .columns=${this.columns} .data=${this.outcomes}></mf-table>`
        : nothing}
    </section>`;
  }
}
