// The Usage Explorer: meter, interval, range, group by, filter → a chart, a table with the
// change from the previous interval, and CSV export of exactly what is shown.
import { html, nothing, svg } from "lit";
import { customElement, state } from "lit/decorators.js";
import { request } from "../api";
import { date, dateTime, number, percent } from "../format";
import { graphql } from "../gql";
import type { ConsoleUsageQuery, TimeGrouping } from "../gql/graphql";
import { setParams } from "../router";
import { View } from "../view";

const MeterNames = graphql(`
  query ConsoleUsageMeters {
    meters {
      meterApiName
      dimensions
    }
  }
`);

const Usage = graphql(`
  query ConsoleUsage($input: UsageQueryInput!) {
    usage(input: $input) {
      meterApiName
      intervals
      groups {
        group
        total
        values {
          start
          value
          percentageFromPrevious
        }
      }
    }
  }
`);

type Result = ConsoleUsageQuery["usage"];
const COLORS = ["#0550ae", "#bc4c00", "#116329", "#8250df", "#cf222e", "#4d2d00"];
const DAY = 86_400_000;

function label(group: unknown): string {
  const entries = Object.entries((group ?? {}) as Record<string, string>);
  return entries.length ? entries.map(([k, v]) => `${k}=${v}`).join(", ") : "all";
}

function csvCell(value: string): string {
  return /[",\n]/.test(value) ? `"${value.replace(/"/g, '""')}"` : value;
}

/** The table as CSV: one row per group and interval, as shown. */
export function toCsv(result: Result): string {
  const lines = ["group,interval_start,value,percent_change"];
  for (const group of result.groups) {
    for (const point of group.values) {
      lines.push(
        [label(group.group), point.start, point.value, point.percentageFromPrevious ?? ""]
          .map((v) => csvCell(String(v)))
          .join(","),
      );
    }
  }
  return lines.join("\n") + "\n";
}

function isoDay(offsetDays: number): string {
  return new Date(Date.now() + offsetDays * DAY).toISOString().slice(0, 10);
}

@customElement("mf-usage")
export class MfUsage extends View {
  @state() private meters: { meterApiName: string; dimensions: string[] }[] = [];
  @state() private result: Result | undefined;
  private loaded: string | undefined;

  private p(name: string, fallback = ""): string {
    return this.route.params.get(name) || fallback;
  }

  protected override willUpdate(): void {
    const key = this.route.params.toString();
    if (key !== this.loaded) {
      this.loaded = key;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    await this.guard(async () => {
      if (!this.meters.length) this.meters = (await request(MeterNames)).meters;
      const meter = this.p("meter", this.meters[0]?.meterApiName ?? "");
      if (!meter) {
        this.result = undefined;
        return;
      }
      const groupBy = this.p("groupBy");
      const customer = this.p("customer");
      // "region=us,eu; tier=pro" → {region: ["us", "eu"], tier: ["pro"]}
      const filter: Record<string, string[]> = customer ? { customerId: [customer] } : {};
      for (const clause of this.p("where").split(";")) {
        const [key, values = ""] = clause.split("=");
        if (key?.trim() && values.trim()) {
          filter[key.trim()] = values.split(",").map((v) => v.trim()).filter(Boolean);
        }
      }
      this.result = (
        await request(Usage, {
          input: {
            meterApiName: meter,
            timeGroupingInterval: this.p("interval", "DAY") as TimeGrouping,
            startTime: new Date(`${this.p("from", isoDay(-6))}T00:00:00Z`).toISOString(),
            endTime: new Date(new Date(`${this.p("to", isoDay(0))}T00:00:00Z`).getTime() + DAY).toISOString(),
            groupBy: groupBy ? [groupBy] : null,
            filter: Object.keys(filter).length ? filter : null,
            limit: 50,
          },
        })
      ).usage;
    });
  }

  private change(event: Event): void {
    const form = new FormData((event.target as HTMLElement).closest("form")!);
    const params: Record<string, string> = {};
    for (const name of ["meter", "interval", "from", "to", "groupBy", "customer", "where"]) {
      params[name] = String(form.get(name) ?? "");
    }
    setParams(params);
  }

  private download(): void {
    if (!this.result) return;
    const blob = new Blob([toCsv(this.result)], { type: "text/csv" });
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = `usage-${this.result.meterApiName}.csv`;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }

  private chart(result: Result) {
    const width = 800;
    const height = 220;
    const n = result.intervals.length;
    const max = Math.max(1, ...result.groups.flatMap((g) => g.values.map((v) => Number(v.value))));
    const x = (i: number) => (n <= 1 ? width / 2 : (i / (n - 1)) * (width - 40) + 20);
    const y = (v: number) => height - 20 - (v / max) * (height - 40);
    const index = new Map(result.intervals.map((start, i) => [start, i]));
    return html`<figure class="chart">
      <svg viewBox="0 0 ${width} ${height}" role="img"
        aria-label="Usage of ${result.meterApiName} per interval, ${result.groups.length} series">
        <line x1="20" y1=${height - 20} x2=${width - 20} y2=${height - 20} stroke="#8c959f" />
        <line x1="20" y1="20" x2=${width - 20} y2="20" stroke="#eaeef2" />
        <text x="22" y="14" font-size="11" fill="#57606a">${number(max)}</text>
        ${n
          ? svg`<text x="20" y=${height - 4} font-size="11" fill="#57606a">${date(result.intervals[0])}</text>
              <text x=${width - 20} y=${height - 4} font-size="11" fill="#57606a" text-anchor="end"
                >${date(result.intervals[n - 1])}</text>`
          : nothing}
        ${result.groups.map((group, g) => {
          const points = group.values
            .map((v) => `${x(index.get(v.start) ?? 0)},${y(Number(v.value))}`)
            .join(" ");
          return svg`<polyline points=${points} fill="none" stroke=${COLORS[g % COLORS.length]}
            stroke-width="2" />`;
        })}
      </svg>
      <figcaption>
        ${result.groups.map(
          (group, g) => html`<span class="legend"
            ><span class="swatch" style="background:${COLORS[g % COLORS.length]}"></span>${label(
              group.group,
            )}: ${number(group.total)}</span
          >`,
        )}
      </figcaption>
    </figure>`;
  }

  override render() {
    const meter = this.p("meter", this.meters[0]?.meterApiName ?? "");
    const dims = this.meters.find((m) => m.meterApiName === meter)?.dimensions ?? [];
    const result = this.result;
    return html`<h1>Usage</h1>
      <form class="filters" aria-label="Usage query" @change=${this.change}
        @submit=${(e: Event) => e.preventDefault()}>
        <label>Meter
          <select name="meter">
            ${this.meters.map((m) => html`<option ?selected=${m.meterApiName === meter}>${m.meterApiName}</option>`)}
          </select></label>
        <label>Interval
          <select name="interval">
            ${["HOUR", "DAY", "WEEK", "MONTH"].map(
              (i) => html`<option ?selected=${i === this.p("interval", "DAY")}>${i}</option>`,
            )}
          </select></label>
        <label>From <input type="date" name="from" .value=${this.p("from", isoDay(-6))} /></label>
        <label>To <input type="date" name="to" .value=${this.p("to", isoDay(0))} /></label>
        <label>Group by
          <select name="groupBy">
            <option value="">Nothing</option>
            ${["customerId", ...dims].map(
              (d) => html`<option ?selected=${d === this.p("groupBy")}>${d}</option>`,
            )}
          </select></label>
        <label>Customer <input name="customer" .value=${this.p("customer")} /></label>
        <label
          >Filter (key=value,value; key=value)
          <input name="where" placeholder="region=us,eu" .value=${this.p("where")}
        /></label>
      </form>
      ${this.renderState()}
      ${this.status === "ready"
        ? !meter
          ? this.empty("No meters yet: create one under Meters.")
          : result && result.groups.length
            ? html`${this.chart(result)}
                <div class="bar">
                  <h2>Table</h2>
                  <button type="button" @click=${this.download}>Export CSV</button>
                </div>
                <div class="table-scroll">
                  <table aria-label="Usage table">
                    <thead>
                      <tr>
                        <th scope="col">Group</th><th scope="col">Interval start</th>
                        <th scope="col" class="num">Value</th><th scope="col" class="num">Change</th>
                      </tr>
                    </thead>
                    <tbody>
                      ${result.groups.flatMap((group) =>
                        group.values.map(
                          (point) => html`<tr>
                            <td>${label(group.group)}</td>
                            <td>${dateTime(point.start)}</td>
                            <td class="num">${number(point.value)}</td>
                            <td class="num">${percent(point.percentageFromPrevious)}</td>
                          </tr>`,
                        ),
                      )}
                    </tbody>
                  </table>
                </div>`
            : this.empty("No usage in this range.")
        : nothing}`;
  }
}
