// Events (By Event): ingestion order, a live tail, filters, a drawer per event, cancel, and
// the Ingest panel.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import type { ColumnDef } from "@tanstack/lit-table";
import { message, request, subscribe } from "../api";
import { dateTime, number } from "../format";
import { graphql } from "../gql";
import type { ConsoleEventFieldsFragment, MeterEventFilter } from "../gql/graphql";
import { href, setParams } from "../router";
import "../table";
import { View } from "../view";
import "./ingest";

graphql(`
  fragment ConsoleEventFields on MeterEvent {
    id
    meterApiName
    customerId
    meterValue
    eventTime
    uniqueId
    dimensions
    payload
    ingestedAt
    cancelledAt
    invoiceId
    planId
    late
  }
`);

const Events = graphql(`
  query ConsoleEvents($filter: MeterEventFilter, $first: Int, $after: String) {
    meterEvents(filter: $filter, first: $first, after: $after, newestFirst: true) {
      edges {
        node {
          ...ConsoleEventFields
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

const Tail = graphql(`
  subscription ConsoleEventTail($meterApiName: String) {
    meterEventsIngested(meterApiName: $meterApiName) {
      events {
        ...ConsoleEventFields
      }
    }
  }
`);

const Cancel = graphql(`
  mutation ConsoleCancelEvents($meterApiName: String!, $uniqueIds: [String!]!) {
    cancelMeterEvents(meterApiName: $meterApiName, uniqueIds: $uniqueIds) {
      __typename
      ... on CancelledMeterEvents {
        cancelled
        alreadyCancelled
        notFound
      }
      ... on Error {
        message
      }
    }
  }
`);

type Row = ConsoleEventFieldsFragment;
const PAGE = 500;
const MAX_ROWS = 20_000;

function toIso(local: string): string | null {
  return local ? new Date(local).toISOString() : null;
}

@customElement("mf-events")
export class MfEvents extends View {
  @state() private rows: Row[] = []; // newest first
  @state() private cursor: string | null = null;
  @state() private more = false;
  @state() private selected: Row | undefined;
  @state() private live = "connecting";
  @state() private ingesting = false;
  private loaded: string | undefined;
  private stop: (() => void) | undefined;

  private param(name: string): string {
    return this.route.params.get(name) ?? "";
  }

  private get filter(): MeterEventFilter {
    return {
      meterApiName: this.param("meter") || null,
      customerId: this.param("customer") || null,
      startTime: toIso(this.param("from")),
      endTime: toIso(this.param("to")),
      includeCancelled: this.param("cancelled") === "1",
    };
  }

  protected override willUpdate(): void {
    const key = this.route.params.toString();
    if (key !== this.loaded) {
      this.loaded = key;
      this.rows = [];
      this.cursor = null;
      void this.load();
      this.follow();
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.stop?.();
  }

  private opener: HTMLElement | null = null;

  /** Open the drawer: focus moves into it; Escape or Close returns it to the row. */
  private open(row: Row): void {
    this.opener = document.activeElement as HTMLElement | null;
    this.selected = row;
    void this.updateComplete.then(() =>
      this.querySelector<HTMLButtonElement>(".drawer button")?.focus(),
    );
  }

  private close(): void {
    this.selected = undefined;
    this.opener?.focus();
  }

  private async load(): Promise<void> {
    await this.guard(async () => {
      const data = await request(Events, { filter: this.filter, first: PAGE, after: this.cursor });
      // Newest first: each further page is older, below what is shown.
      const known = new Set(this.rows.map((row) => row.id));
      const page = data.meterEvents.edges.map((edge) => edge.node).filter((e) => !known.has(e.id));
      this.rows = [...this.rows, ...page].slice(0, MAX_ROWS);
      this.cursor = data.meterEvents.pageInfo.endCursor ?? this.cursor;
      this.more = data.meterEvents.pageInfo.hasNextPage;
    });
  }

  private fits(event: Row): boolean {
    const filter = this.filter;
    if (filter.customerId && event.customerId !== filter.customerId) return false;
    if (filter.startTime && event.eventTime < filter.startTime) return false;
    if (filter.endTime && event.eventTime >= filter.endTime) return false;
    return true;
  }

  /** The live tail: new events land on top as they are ingested. */
  private follow(): void {
    this.stop?.();
    this.live = "connecting";
    this.stop = subscribe(
      Tail,
      { meterApiName: this.filter.meterApiName },
      (data) => {
        this.live = "live";
        const fresh = data.meterEventsIngested.events.filter((e) => this.fits(e)).reverse();
        const known = new Set(this.rows.map((row) => row.id));
        const added = fresh.filter((e) => !known.has(e.id));
        if (added.length) this.rows = [...added, ...this.rows].slice(0, MAX_ROWS);
      },
      (error) => (this.live = `live tail stopped: ${error}`),
    );
  }

  private async cancel(row: Row): Promise<void> {
    if (!row.uniqueId) return;
    try {
      const result = (
        await request(Cancel, { meterApiName: row.meterApiName, uniqueIds: [row.uniqueId] })
      ).cancelMeterEvents;
      if (result.__typename === "CancelledMeterEvents") {
        this.notice = result.cancelled.length
          ? `Event ${row.uniqueId} cancelled: it no longer counts in usage.`
          : `Event ${row.uniqueId} was already cancelled.`;
        this.selected = { ...row, cancelledAt: new Date().toISOString() };
      } else {
        this.notice = `Not cancelled: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.notice = `Not cancelled: ${message(error)}`;
    }
  }

  private columns: ColumnDef<Row, any>[] = [
    { id: "id", header: "#", meta: { num: true }, accessorFn: (row) => Number(row.id) },
    { id: "meter", header: "Meter", accessorFn: (row) => row.meterApiName },
    { id: "customer", header: "Customer", accessorFn: (row) => row.customerId },
    {
      id: "value",
      header: "Value",
      meta: { num: true },
      accessorFn: (row) => Number(row.meterValue),
      cell: (info) => number(info.row.original.meterValue),
    },
    {
      id: "eventTime",
      header: "Event time",
      accessorFn: (row) => row.eventTime,
      cell: (info) => dateTime(info.getValue()),
    },
    {
      id: "ingestedAt",
      header: "Ingested",
      accessorFn: (row) => row.ingestedAt,
      cell: (info) => dateTime(info.getValue()),
    },
    {
      id: "flags",
      header: "Flags",
      enableSorting: false,
      cell: (info) => {
        const row = info.row.original;
        return html`${row.late ? html`<span class="badge late">late</span>` : nothing}
        ${row.cancelledAt ? html`<span class="badge deprecated">cancelled</span>` : nothing}`;
      },
    },
  ];

  private setFilter(event: Event): void {
    const form = new FormData((event.target as HTMLElement).closest("form")!);
    const params: Record<string, string> = {};
    for (const name of ["meter", "customer", "from", "to"]) {
      params[name] = String(form.get(name) ?? "").trim();
    }
    params.cancelled = form.get("cancelled") ? "1" : "";
    setParams(params);
  }

  private renderDrawer(row: Row) {
    return html`<aside
      class="drawer"
      role="dialog"
      aria-modal="false"
      aria-labelledby="drawer-title"
      @keydown=${(event: KeyboardEvent) => {
        if (event.key === "Escape") this.close();
      }}
    >
      <div class="bar">
        <h2 id="drawer-title">Event #${row.id}</h2>
        <button type="button" @click=${() => this.close()}>Close</button>
      </div>
      <dl>
        <dt>Meter</dt>
        <dd>${row.meterApiName}</dd>
        <dt>Customer</dt>
        <dd><a href=${href("customers", row.customerId)}>${row.customerId}</a></dd>
        <dt>Value</dt>
        <dd>${number(row.meterValue)}</dd>
        <dt>Event time</dt>
        <dd>${dateTime(row.eventTime)}</dd>
        <dt>Ingested</dt>
        <dd>${dateTime(row.ingestedAt)}</dd>
        <dt>Unique ID</dt>
        <dd>${row.uniqueId ?? "—"}</dd>
        <dt>Dimensions</dt>
        <dd>${JSON.stringify(row.dimensions)}</dd>
        <dt>Pricing plan</dt>
        <dd>${row.planId ? html`<a href=${href("plans", row.planId)}>${row.planId}</a>` : "none"}</dd>
        <dt>Invoice</dt>
        <dd>
          ${row.invoiceId
            ? html`<a href=${href("invoices", row.invoiceId)}
                >${row.invoiceId}</a
              >`
            : "none (no plan covers it)"}
        </dd>
        <dt>Late</dt>
        <dd>
          ${row.late
            ? "Yes: it arrived after its invoice was finalized; it counts in usage, billed nowhere."
            : "No"}
        </dd>
        <dt>Cancelled</dt>
        <dd>${row.cancelledAt ? dateTime(row.cancelledAt) : "No"}</dd>
      </dl>
      <h3>Payload as ingested</h3>
      <pre class="payload" tabindex="0" aria-label="Payload as ingested">
${JSON.stringify(row.payload, null, 2)}</pre
      >
      ${row.uniqueId && !row.cancelledAt
        ? html`<button type="button" class="danger" @click=${() => this.cancel(row)}>
            Cancel event
          </button>`
        : nothing}
    </aside>`;
  }

  override render() {
    return html`<div class="bar">
        <h1>Events</h1>
        <span class="live" role="status">${this.live === "live" ? "● Live" : this.live}</span>
        <button type="button" @click=${() => (this.ingesting = !this.ingesting)}>
          ${this.ingesting ? "Close ingest" : "Ingest"}
        </button>
      </div>
      ${this.ingesting ? html`<mf-ingest></mf-ingest>` : nothing}
      <form class="filters" aria-label="Filter events" @change=${this.setFilter}
        @submit=${(e: Event) => e.preventDefault()}>
        <label>Meter <input name="meter" .value=${this.param("meter")} /></label>
        <label>Customer <input name="customer" .value=${this.param("customer")} /></label>
        <label>From <input name="from" type="datetime-local" .value=${this.param("from")} /></label>
        <label>To <input name="to" type="datetime-local" .value=${this.param("to")} /></label>
        <label
          ><input type="checkbox" name="cancelled" ?checked=${this.param("cancelled") === "1"} />
          Include cancelled</label
        >
      </form>
      ${this.renderNotice()} ${this.renderState()}
      ${this.status === "ready"
        ? this.rows.length
          ? html`<p class="muted">${number(this.rows.length)} events, newest first.</p>
              <mf-table
                label="Events"
                .columns=${this.columns}
                .data=${this.rows}
                .rowKey=${(row: Row) => row.id}
                .open=${(row: Row) => this.open(row)}
              ></mf-table>
              ${this.more
                ? html`<button type="button" @click=${() => this.load()}>Load older events</button>`
                : nothing}`
          : this.empty("No events match yet. They appear here as they are ingested.")
        : nothing}
      ${this.selected ? this.renderDrawer(this.selected) : nothing}`;
  }
}
