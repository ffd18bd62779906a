// Meters: Status column, All / Active / Draft / Deprecated, create, edit a draft, activate,
// deprecate, and the lifecycle's refusals explained in words.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import type { ColumnDef } from "@tanstack/lit-table";
import { message, request } from "../api";
import { date } from "../format";
import { graphql } from "../gql";
import type { ConsoleMetersQuery, MeterStatus, MeterType } from "../gql/graphql";
import { setParams } from "../router";
import "../table";
import { View } from "../view";

const Meters = graphql(`
  query ConsoleMeters($status: MeterStatus) {
    meters(status: $status) {
      meterApiName
      label
      meterType
      unit
      dimensions
      status
      createdAt
      useInBilling
    }
  }
`);

const CreateMeter = graphql(`
  mutation ConsoleCreateMeter($input: CreateMeterInput!) {
    createMeter(input: $input) {
      __typename
      ... on Error {
        code
        message
      }
    }
  }
`);

const UpdateMeter = graphql(`
  mutation ConsoleUpdateMeter($input: UpdateMeterInput!) {
    updateMeter(input: $input) {
      __typename
      ... on InvalidTransitionError {
        currentStatus
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

const Activate = graphql(`
  mutation ConsoleActivateMeter($name: String!) {
    activateMeter(meterApiName: $name) {
      __typename
      ... on InvalidTransitionError {
        currentStatus
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

const Deprecate = graphql(`
  mutation ConsoleDeprecateMeter($name: String!) {
    deprecateMeter(meterApiName: $name) {
      __typename
      ... on InvalidTransitionError {
        currentStatus
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

type Row = ConsoleMetersQuery["meters"][number];
const TYPES: MeterType[] = [
  "SUM",
  "COUNT",
  "MAX",
  "LATEST",
  "RUNNING_TOTAL",
  "UNIQUE_COUNT",
  "DURATION",
];
const FILTERS: [string, string][] = [
  ["", "All"],
  ["active", "Active"],
  ["draft", "Draft"],
  ["deprecated", "Deprecated"],
];

type Action = "activate" | "deprecate" | "edit";

/** Why the lifecycle refused, in words an operator acts on. */
export function explain(action: Action, status: string, fallback: string): string {
  if (action === "activate" && status === "ACTIVE") {
    return "This meter is already active: it accepts events and its traits are locked.";
  }
  if (action === "activate" && status === "DEPRECATED") {
    return (
      "A deprecated meter cannot be activated again: it rejects new events for good. " +
      "Create a new meter instead."
    );
  }
  if (action === "deprecate" && status === "DEPRECATED") {
    return "This meter is already deprecated.";
  }
  if (action === "edit") {
    return (
      `Only a draft meter can be edited; this one is ${status.toLowerCase()}. Its type, ` +
      "dimensions and aggregation are locked so that usage already recorded keeps its meaning."
    );
  }
  return fallback;
}

type Result = { __typename: string; message?: string; currentStatus?: string };

@customElement("mf-meters")
export class MfMeters extends View {
  @state() private rows: Row[] = [];
  @state() private creating = false;
  @state() private editing: Row | undefined;
  private loaded: string | undefined;

  private get filter(): string {
    return this.route.params.get("status") ?? "";
  }

  protected override willUpdate(): void {
    if (this.filter !== this.loaded) {
      this.loaded = this.filter;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    const filter = this.filter;
    await this.guard(async () => {
      const status = filter ? (filter.toUpperCase() as MeterStatus) : null;
      const meters = (await request(Meters, { status })).meters;
      if (filter === this.filter) this.rows = meters; // a later click wins
    });
  }

  private async act(action: Action, row: Row, result: Promise<Result>, done: string) {
    try {
      const answer = await result;
      if (answer.__typename === "Meter") {
        this.notice = done;
        await this.load();
      } else {
        this.notice = explain(action, answer.currentStatus ?? "", answer.message ?? "refused");
      }
    } catch (error) {
      this.notice = `${row.meterApiName}: ${message(error)}`;
    }
  }

  private activate(row: Row): void {
    void this.act(
      "activate",
      row,
      request(Activate, { name: row.meterApiName }).then((d) => d.activateMeter),
      `${row.meterApiName} is active: it accepts events and its traits are locked.`,
    );
  }

  private deprecate(row: Row): void {
    void this.act(
      "deprecate",
      row,
      request(Deprecate, { name: row.meterApiName }).then((d) => d.deprecateMeter),
      `${row.meterApiName} is deprecated: new events are rejected, its data stays.`,
    );
  }

  private columns: ColumnDef<Row, any>[] = [
    { id: "meterApiName", header: "API name", accessorFn: (row) => row.meterApiName },
    { id: "label", header: "Label", accessorFn: (row) => row.label },
    { id: "meterType", header: "Type", accessorFn: (row) => row.meterType },
    { id: "unit", header: "Unit", accessorFn: (row) => row.unit ?? "" },
    { id: "dimensions", header: "Dimensions", accessorFn: (row) => row.dimensions.join(", ") },
    {
      id: "status",
      header: "Status",
      accessorFn: (row) => row.status,
      cell: (info) =>
        html`<span class="badge ${String(info.getValue()).toLowerCase()}">${info.getValue()}</span>`,
    },
    { id: "createdAt", header: "Created", accessorFn: (row) => row.createdAt, cell: (i) => date(i.getValue()) },
    {
      id: "actions",
      header: "Actions",
      enableSorting: false,
      cell: (info) => {
        const row = info.row.original;
        return html`<span class="actions">
          ${row.status === "DRAFT"
            ? html`<button type="button" @click=${() => (this.editing = row)}>
                  Edit <span class="sr-only">${row.meterApiName}</span></button
                ><button type="button" @click=${() => this.activate(row)}>
                  Activate <span class="sr-only">${row.meterApiName}</span>
                </button>`
            : nothing}
          ${row.status !== "DEPRECATED"
            ? html`<button type="button" @click=${() => this.deprecate(row)}>
                Deprecate <span class="sr-only">${row.meterApiName}</span>
              </button>`
            : nothing}
        </span>`;
      },
    },
  ];

  private fields(form: FormData) {
    const dimensions = String(form.get("dimensions") ?? "")
      .split(",")
      .map((d) => d.trim())
      .filter(Boolean);
    return {
      meterType: String(form.get("meterType")) as MeterType,
      label: String(form.get("label") ?? "") || null,
      unit: String(form.get("unit") ?? "") || null,
      dimensions,
    };
  }

  private async create(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    const name = String(form.get("meterApiName") ?? "").trim();
    try {
      const result = (
        await request(CreateMeter, { input: { meterApiName: name, ...this.fields(form) } })
      ).createMeter;
      if (result.__typename === "Meter") {
        this.notice = `${name} created as a draft: activate it to take events.`;
        this.creating = false;
        await this.load();
      } else {
        this.notice = `Not created: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.notice = `Not created: ${message(error)}`;
    }
  }

  private async save(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const row = this.editing!;
    const form = new FormData(event.target as HTMLFormElement);
    const answer = (
      await request(UpdateMeter, {
        input: { meterApiName: row.meterApiName, ...this.fields(form) },
      }).catch((error) => ({ updateMeter: { __typename: "Error", message: message(error) } }))
    ).updateMeter as Result;
    if (answer.__typename === "Meter") {
      this.notice = `${row.meterApiName} saved.`;
      this.editing = undefined;
      await this.load();
    } else {
      this.notice = explain("edit", answer.currentStatus ?? "", answer.message ?? "refused");
      if (!answer.currentStatus) this.notice = `Not saved: ${answer.message}`;
    }
  }

  private renderForm(row: Row | undefined) {
    return html`<form
      class="panel"
      aria-label=${row ? `Edit meter ${row.meterApiName}` : "Create meter"}
      @submit=${row ? this.save : this.create}
    >
      ${row
        ? html`<p><strong>${row.meterApiName}</strong> (draft)</p>`
        : html`<label>API name <input name="meterApiName" required /></label>`}
      <label
        >Type
        <select name="meterType">
          ${TYPES.map(
            (type) => html`<option ?selected=${row?.meterType === type}>${type}</option>`,
          )}
        </select></label
      >
      <label>Label <input name="label" .value=${row?.label ?? ""} /></label>
      <label>Unit <input name="unit" .value=${row?.unit ?? ""} /></label>
      <label
        >Dimensions (comma-separated)
        <input name="dimensions" .value=${row?.dimensions.join(", ") ?? ""}
      /></label>
      <button type="submit">${row ? "Save meter" : "Create meter"}</button>
      ${row
        ? html`<button type="button" @click=${() => (this.editing = undefined)}>Cancel</button>`
        : nothing}
    </form>`;
  }

  override render() {
    return html`<div class="bar">
        <h1>Meters</h1>
        <button type="button" @click=${() => (this.creating = !this.creating)}>
          ${this.creating ? "Cancel" : "New meter"}
        </button>
      </div>
      ${this.creating ? this.renderForm(undefined) : nothing}
      ${this.editing ? this.renderForm(this.editing) : nothing}
      ${this.renderNotice()}
      <div class="segmented" role="group" aria-label="Status">
        ${FILTERS.map(
          ([value, label]) =>
            html`<button
              type="button"
              aria-pressed=${this.filter === value ? "true" : "false"}
              @click=${() => {
                this.rows = [];
                this.status = "loading";
                setParams({ status: value });
              }}
            >
              ${label}
            </button>`,
        )}
      </div>
      ${this.renderState()}
      ${this.status === "ready"
        ? this.rows.length
          ? html`<mf-table
              label="Meters"
              .columns=${this.columns}
              .data=${this.rows}
              .rowKey=${(row: Row) => row.meterApiName}
            ></mf-table>`
          : this.empty(this.filter ? `No ${this.filter} meters.` : "No meters yet.")
        : nothing}`;
  }
}
