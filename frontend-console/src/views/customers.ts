// Customers: a searchable, sortable list (current total, balance, plan); create; the customer
// page with the widgets.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import type { ColumnDef, SortingState } from "@tanstack/lit-table";
import { message, request } from "../api";
import { money } from "../format";
import { graphql } from "../gql";
import type { ConsoleCustomersQuery } from "../gql/graphql";
import { href, navigate, setParams } from "../router";
import "../table";
import { View, problem } from "../view";
import "./customer";

const Customers = graphql(`
  query ConsoleCustomers($first: Int, $filter: CustomerFilter, $orderBy: CustomerOrder) {
    customers(first: $first, filter: $filter, orderBy: $orderBy) {
      edges {
        node {
          customerId
          name
          email
          enabled
          plan {
            id
            name
          }
          currentInvoice {
            total
            currency
          }
          wallet {
            balance
            currency
          }
        }
      }
      pageInfo {
        hasNextPage
      }
    }
  }
`);

export const CreateCustomer = graphql(`
  mutation ConsoleCreateCustomer($input: CreateCustomerInput!) {
    createCustomer(input: $input) {
      __typename
      ... on Customer {
        customerId
      }
      ... on Error {
        code
        message
      }
    }
  }
`);

type Row = ConsoleCustomersQuery["customers"]["edges"][number]["node"];
const FIELDS: Record<string, "NAME" | "CREATED_AT" | "CURRENT_TOTAL"> = {
  name: "NAME",
  created: "CREATED_AT",
  total: "CURRENT_TOTAL",
};

@customElement("mf-customers")
export class MfCustomers extends View {
  @state() private rows: Row[] = [];
  @state() private more = false;
  @state() private creating = false;
  private loaded: string | undefined;

  protected override willUpdate(): void {
    if (this.route.id) return;
    const key = this.route.params.toString();
    if (key !== this.loaded) {
      this.loaded = key;
      void this.load();
    }
  }

  private get sorting(): SortingState {
    const sort = this.route.params.get("sort") ?? "";
    if (!FIELDS[sort]) return [];
    return [{ id: sort, desc: this.route.params.get("dir") === "desc" }];
  }

  private async load(): Promise<void> {
    const key = this.loaded;
    const search = this.route.params.get("q") ?? "";
    const [sort] = this.sorting;
    await this.guard(async () => {
      const data = await request(Customers, {
        first: 500,
        filter: search ? { search } : null,
        orderBy: sort ? { field: FIELDS[sort.id], direction: sort.desc ? "DESC" : "ASC" } : null,
      });
      if (key !== this.loaded) return; // a later filter wins
      this.rows = data.customers.edges.map((edge) => edge.node);
      this.more = data.customers.pageInfo.hasNextPage;
    });
  }

  private columns: ColumnDef<Row, any>[] = [
    {
      id: "customerId",
      header: "Customer ID",
      enableSorting: false,
      accessorFn: (row) => row.customerId,
      cell: (info) =>
        html`<a href=${href("customers", info.row.original.customerId)}>${info.getValue()}</a>`,
    },
    { id: "name", header: "Name", accessorFn: (row) => row.name },
    { id: "email", header: "Email", enableSorting: false, accessorFn: (row) => row.email ?? "" },
    {
      id: "plan",
      header: "Plan",
      enableSorting: false,
      accessorFn: (row) => row.plan?.name ?? "—",
    },
    {
      id: "total",
      header: "Current total",
      meta: { num: true },
      accessorFn: (row) => row.currentInvoice?.total ?? "",
      cell: (info) => {
        const invoice = info.row.original.currentInvoice;
        return invoice ? money(invoice.total, invoice.currency) : "—";
      },
    },
    {
      id: "balance",
      header: "Balance",
      enableSorting: false,
      meta: { num: true },
      accessorFn: (row) => row.wallet.balance,
      cell: (info) => money(info.row.original.wallet.balance, info.row.original.wallet.currency),
    },
    {
      id: "enabled",
      header: "Status",
      enableSorting: false,
      accessorFn: (row) => (row.enabled ? "Enabled" : "Disabled"),
    },
  ];

  private onSort(event: CustomEvent<SortingState>): void {
    const [sort] = event.detail;
    setParams({
      q: this.route.params.get("q") ?? "",
      sort: sort?.id ?? "",
      dir: sort?.desc ? "desc" : "",
    });
  }

  private search(event: Event): void {
    const q = (event.target as HTMLInputElement).value;
    setParams({
      q,
      sort: this.route.params.get("sort") ?? "",
      dir: this.route.params.get("dir") ?? "",
    });
  }

  private async create(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    const customerId = String(form.get("customerId") ?? "").trim();
    try {
      const result = (
        await request(CreateCustomer, {
          input: {
            customerId,
            name: String(form.get("name") ?? "") || null,
            email: String(form.get("email") ?? "") || null,
          },
        })
      ).createCustomer;
      const failure = problem(result);
      if (failure) {
        this.notice = `Not created: ${failure}`;
        return;
      }
      this.notice = `Customer ${customerId} created.`;
      this.creating = false;
      navigate(href("customers", customerId));
    } catch (error) {
      this.notice = `Not created: ${message(error)}`;
    }
  }

  override render() {
    if (this.route.id) {
      return html`<mf-customer .route=${this.route} .customerId=${this.route.id}></mf-customer>`;
    }
    return html`<div class="bar">
        <h1>Customers</h1>
        <button type="button" @click=${() => (this.creating = !this.creating)}>
          ${this.creating ? "Cancel" : "Create customer"}
        </button>
      </div>
      ${this.creating
        ? html`<form class="panel" @submit=${this.create} aria-label="Create customer">
            <label>Customer ID <input name="customerId" required /></label>
            <label>Name <input name="name" /></label>
            <label>Email <input name="email" type="email" /></label>
            <button type="submit">Create</button>
          </form>`
        : nothing}
      ${this.renderNotice()}
      <div class="filters">
        <label
          >Search
          <input
            type="search"
            name="q"
            .value=${this.route.params.get("q") ?? ""}
            @change=${this.search}
            placeholder="ID, name or email"
        /></label>
      </div>
      ${this.renderState()}
      ${this.status === "ready"
        ? this.rows.length
          ? html`<mf-table
                label="Customers"
                manual
                .columns=${this.columns}
                .data=${this.rows}
                .sorting=${this.sorting}
                .rowKey=${(row: Row) => row.customerId}
                @sort=${this.onSort}
              ></mf-table>
              ${this.more ? html`<p class="muted">Showing the first 500.</p>` : nothing}`
          : this.empty("No customers match.")
        : nothing}`;
  }
}
