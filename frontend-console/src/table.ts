// <mf-table>: a headless TanStack table (sorting) drawn by Lit, with a virtualized body so a
// list of 10,000 rows keeps a few dozen <tr> in the page.
import { LitElement, html, nothing, type PropertyValues } from "lit";
import { customElement, property } from "lit/decorators.js";
import { createRef, ref, type Ref } from "lit/directives/ref.js";
import {
  TableController,
  flexRender,
  getCoreRowModel,
  getSortedRowModel,
  type ColumnDef,
  type Row,
  type SortingState,
} from "@tanstack/lit-table";
import { VirtualizerController } from "@tanstack/lit-virtual";

const ROW_HEIGHT = 37;

@customElement("mf-table")
export class MfTable<T extends object = object> extends LitElement {
  @property({ attribute: false }) columns: ColumnDef<T, any>[] = [];
  @property({ attribute: false }) data: T[] = [];
  /** The table's accessible name. */
  @property() label = "";
  /** Sorted by the server: the table only reports the wanted order (event "sort"). */
  @property({ type: Boolean }) manual = false;
  @property({ attribute: false }) sorting: SortingState = [];
  @property({ attribute: false }) rowKey: ((row: T) => string) | undefined;
  /** Called when a row is opened (click or Enter). */
  @property({ attribute: false }) open: ((row: T) => void) | undefined;

  private controller = new TableController<T>(this);
  private scroller: Ref<HTMLDivElement> = createRef();
  private virtualizer = new VirtualizerController<HTMLDivElement, HTMLTableRowElement>(this, {
    count: 0,
    getScrollElement: () => this.scroller.value ?? null,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
  });

  protected override createRenderRoot(): HTMLElement {
    return this; // the console's stylesheet applies; tests and axe see plain DOM
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has("data")) {
      this.virtualizer.getVirtualizer().setOptions({
        ...this.virtualizer.getVirtualizer().options,
        count: this.data.length,
      });
    }
  }

  private setSorting(next: SortingState): void {
    this.sorting = next;
    this.dispatchEvent(new CustomEvent("sort", { detail: next }));
  }

  override render() {
    const table = this.controller.table({
      columns: this.columns,
      data: this.data,
      state: { sorting: this.sorting },
      manualSorting: this.manual,
      onSortingChange: (updater) =>
        this.setSorting(typeof updater === "function" ? updater(this.sorting) : updater),
      getCoreRowModel: getCoreRowModel(),
      getSortedRowModel: getSortedRowModel(),
      getRowId: this.rowKey ? (row) => this.rowKey!(row) : undefined,
    });
    const rows = table.getRowModel().rows;
    const virtualizer = this.virtualizer.getVirtualizer();
    const items = virtualizer.getVirtualItems();
    const before = items.length ? items[0].start : 0;
    const after = items.length ? virtualizer.getTotalSize() - items[items.length - 1].end : 0;
    const width = table.getVisibleLeafColumns().length;
    return html`<div class="table-scroll" ${ref(this.scroller)}>
      <table aria-label=${this.label} aria-rowcount=${rows.length + 1}>
        <thead>
          ${table.getHeaderGroups().map(
            (group) =>
              html`<tr>
                ${group.headers.map((header) => {
                  const sorted = header.column.getIsSorted();
                  const meta = header.column.columnDef.meta as { num?: boolean } | undefined;
                  const label = flexRender(header.column.columnDef.header, header.getContext());
                  return html`<th
                    scope="col"
                    class=${meta?.num ? "num" : ""}
                    aria-sort=${sorted === "asc" ? "ascending" : sorted === "desc" ? "descending" : "none"}
                  >
                    ${header.column.getCanSort()
                      ? html`<button
                          type="button"
                          class="sort"
                          @click=${header.column.getToggleSortingHandler()}
                        >
                          ${label}<span aria-hidden="true"
                            >${sorted === "asc" ? " ▲" : sorted === "desc" ? " ▼" : ""}</span
                          >
                        </button>`
                      : label}
                  </th>`;
                })}
              </tr>`,
          )}
        </thead>
        <tbody>
          ${before > 0
            ? html`<tr class="spacer" aria-hidden="true" style="height:${before}px">
                <td colspan=${width}></td>
              </tr>`
            : nothing}
          ${items.map((item) => this.renderRow(rows[item.index], item.index))}
          ${after > 0
            ? html`<tr class="spacer" aria-hidden="true" style="height:${after}px">
                <td colspan=${width}></td>
              </tr>`
            : nothing}
        </tbody>
      </table>
    </div>`;
  }

  private renderRow(row: Row<T> | undefined, index: number) {
    if (!row) return nothing;
    const open = this.open;
    return html`<tr
      data-index=${index}
      aria-rowindex=${index + 2}
      class=${open ? "clickable" : ""}
      tabindex=${open ? "0" : nothing}
      @click=${open ? () => open(row.original) : nothing}
      @keydown=${open
        ? (event: KeyboardEvent) => {
            if (event.key !== "Enter") return;
            // Else the key's press would also reach whatever the opened row focuses.
            event.preventDefault();
            open(row.original);
          }
        : nothing}
    >
      ${row.getVisibleCells().map((cell) => {
        const meta = cell.column.columnDef.meta as { num?: boolean } | undefined;
        return html`<td class=${meta?.num ? "num" : ""}>
          ${flexRender(cell.column.columnDef.cell, cell.getContext())}
        </td>`;
      })}
    </tr>`;
  }
}

declare global {
  interface HTMLElementTagNameMap {
    "mf-table": MfTable;
  }
}
