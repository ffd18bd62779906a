// <meterflow-usage meter="...">: a meter's usage over time (uPlot), by interval and dimension.
import { css, html, unsafeCSS, type PropertyValues } from "lit";
import { customElement, property, query, state } from "lit/decorators.js";
import uPlot from "uplot";
import uPlotCss from "uplot/dist/uPlot.min.css?inline";
import { MeterflowElement, theme, throttle } from "./base";

type Interval = "day" | "week" | "month";

interface UsageResult {
  meterApiName: string;
  meterType: string;
  intervals: string[];
  groups: { group: Record<string, string>; total: string; values: { start: string; value: string }[] }[];
}

const DEFAULT_COLORS = ["#0550ae", "#bc4c00", "#1a7f37", "#8250df", "#cf222e", "#116329"];

function range(interval: Interval, now = new Date()): { start: Date; end: Date; grouping: string } {
  const today = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const end = new Date(today + 86_400_000);
  if (interval === "month") {
    return {
      start: new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 11, 1)),
      end,
      grouping: "MONTH",
    };
  }
  if (interval === "week") {
    return { start: new Date(today - 7 * 12 * 86_400_000), end, grouping: "WEEK" };
  }
  return { start: new Date(today - 29 * 86_400_000), end, grouping: "DAY" };
}

@customElement("meterflow-usage")
export class MeterflowUsage extends MeterflowElement {
  static override styles = [
    theme,
    unsafeCSS(uPlotCss),
    css`
      .controls {
        display: flex;
        gap: 1em;
        flex-wrap: wrap;
        margin-bottom: 0.75em;
      }
      label {
        display: inline-flex;
        gap: 0.4em;
        align-items: center;
      }
      .chart {
        min-height: 220px;
      }
      .u-legend {
        font-size: 0.9em;
        color: var(--meterflow-text-color, #1f2328);
      }
    `,
  ];

  /** The meter's API name (required). */
  @property() meter = "";
  /** day | week | month */
  @property() interval: Interval = "day";
  /** Comma-separated dimension keys offered in the "group by" selector. */
  @property() dimensions = "";
  /** The dimension key to group by initially (empty: no grouping). */
  @property({ attribute: "group-by" }) groupBy = "";
  /** Chart height in pixels. */
  @property({ type: Number }) height = 240;

  @state() private result: UsageResult | null = null;
  @query(".chart") private chartBox?: HTMLElement;
  private chart?: uPlot;
  private resize?: ResizeObserver;
  private requested = 0;
  private refresh = throttle(() => void this.load().catch((e) => this.fail(e)), 1000);

  protected override async start(): Promise<void> {
    if (!this.meter) {
      this.status = "error";
      this.message = "set the meter attribute to a meter's API name";
      return;
    }
    await this.load();
    this.follow<{ usageUpdated: { value: string } }>(
      `subscription($c: String!, $m: String!) { usageUpdated(customerId: $c, meterApiName: $m)
        { value at } }`,
      { c: this.customerId, m: this.meter },
      () => this.refresh(),
    );
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    super.willUpdate(changed);
    if (
      (changed.has("interval") || changed.has("groupBy") || changed.has("meter")) &&
      this.customerId &&
      this.status !== "loading"
    ) {
      this.refresh();
    }
  }

  private async load(): Promise<void> {
    const ticket = ++this.requested;
    const { start, end, grouping } = range(this.interval);
    const data = await this.connection!.query<{ usage: UsageResult }>(
      `query($i: UsageQueryInput!) { usage(input: $i) { meterApiName meterType intervals
        groups { group total values { start value } } } }`,
      {
        i: {
          meterApiName: this.meter,
          timeGroupingInterval: grouping,
          startTime: start.toISOString(),
          endTime: end.toISOString(),
          groupBy: this.groupBy ? [this.groupBy] : null,
        },
      },
    );
    if (ticket !== this.requested) return; // a newer query is on its way
    this.result = data.usage;
    this.status = data.usage.groups.length ? "ready" : "empty";
  }

  private colors(): string[] {
    const custom = getComputedStyle(this).getPropertyValue("--meterflow-series-colors").trim();
    const list = custom ? custom.split(",").map((c) => c.trim()).filter(Boolean) : [];
    return list.length ? list : DEFAULT_COLORS;
  }

  private label(group: Record<string, string>): string {
    const parts = Object.values(group ?? {});
    return parts.length ? parts.join(" / ") : this.meter;
  }

  private chartData(result: UsageResult): uPlot.AlignedData {
    const xs = result.intervals.map((iso) => Date.parse(iso) / 1000);
    const index = new Map(result.intervals.map((iso, i) => [Date.parse(iso), i]));
    const series = result.groups.map((g) => {
      const ys: (number | null)[] = xs.map(() => 0);
      for (const v of g.values) {
        const i = index.get(Date.parse(v.start));
        if (i !== undefined) ys[i] = Number(v.value);
      }
      return ys;
    });
    return [xs, ...series] as uPlot.AlignedData;
  }

  protected override updated(changed: PropertyValues): void {
    super.updated(changed);
    const box = this.chartBox;
    const result = this.result;
    if (!box || !result || this.status !== "ready") {
      this.chart?.destroy();
      this.chart = undefined;
      return;
    }
    if (!changed.has("result") && this.chart) return;
    const data = this.chartData(result);
    const labels = result.groups.map((g) => this.label(g.group));
    const key = labels.join("\u0000");
    this.dataset.points = String(data.slice(1).reduce((n, ys) => n + ys.length, 0));
    this.dataset.series = String(labels.length);
    this.dataset.total = String(result.groups.reduce((n, g) => n + Number(g.total), 0));
    if (this.chart && this.chart.root.dataset.key === key && this.chart.root.isConnected) {
      this.chart.setData(data);
      return;
    }
    this.chart?.destroy();
    const colors = this.colors();
    const dateFormat = new Intl.DateTimeFormat(this.locale, {
      month: "short",
      day: this.interval === "month" ? undefined : "numeric",
      year: this.interval === "month" ? "numeric" : undefined,
      timeZone: "UTC",
    });
    const numberFormat = new Intl.NumberFormat(this.locale, { maximumFractionDigits: 3 });
    const text = getComputedStyle(this).color;
    this.chart = new uPlot(
      {
        width: Math.max(200, box.clientWidth || 600),
        height: this.height,
        scales: { x: { time: true } },
        legend: { live: false },
        axes: [
          {
            stroke: text,
            values: (_u, ticks) => ticks.map((t) => dateFormat.format(new Date(t * 1000))),
          },
          { stroke: text, values: (_u, ticks) => ticks.map((t) => numberFormat.format(t)) },
        ],
        series: [
          { label: "Period", value: (_u, t) => (t == null ? "" : dateFormat.format(new Date(t * 1000))) },
          ...labels.map((label, i) => ({
            label,
            stroke: colors[i % colors.length],
            width: 2,
            points: { show: true, size: 6 },
            value: (_u: uPlot, v: number | null) => (v == null ? "" : numberFormat.format(v)),
          })),
        ],
      },
      data,
      box,
    );
    this.chart.root.dataset.key = key;
    if (!this.resize) {
      this.resize = new ResizeObserver(() => {
        if (this.chart && this.chartBox) {
          this.chart.setSize({ width: Math.max(200, this.chartBox.clientWidth), height: this.height });
        }
      });
      this.resize.observe(box);
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.resize?.disconnect();
    this.resize = undefined;
    this.chart?.destroy();
    this.chart = undefined;
  }

  private onInterval(event: Event): void {
    this.interval = (event.target as HTMLSelectElement).value as Interval;
  }

  private onGroupBy(event: Event): void {
    this.groupBy = (event.target as HTMLSelectElement).value;
  }

  override render() {
    const keys = this.dimensions
      .split(",")
      .map((k) => k.trim())
      .filter(Boolean);
    if (this.groupBy && !keys.includes(this.groupBy)) keys.push(this.groupBy);
    const waiting = this.renderState("No usage in this period yet.");
    const result = this.result;
    return html`<section aria-label=${`Usage of ${this.meter}`}>
      <h2>Usage: ${this.meter}</h2>
      <div class="controls">
        <label
          >Interval
          <select @change=${this.onInterval} .value=${this.interval} name="interval">
            <option value="day" ?selected=${this.interval === "day"}>Day</option>
            <option value="week" ?selected=${this.interval === "week"}>Week</option>
            <option value="month" ?selected=${this.interval === "month"}>Month</option>
          </select></label
        >
        <label
          >Group by
          <select @change=${this.onGroupBy} .value=${this.groupBy} name="group-by">
            <option value="" ?selected=${!this.groupBy}>Nothing</option>
            ${keys.map((k) => html`<option value=${k} ?selected=${this.groupBy === k}>${k}</option>`)}
          </select></label
        >
      </div>
      ${waiting ??
      html`<div
          class="chart"
          role="img"
          aria-label=${`Chart of ${this.meter} per ${this.interval}`}
        ></div>
        <table>
          <caption class="sr-only">Totals for the period shown</caption>
          <thead>
            <tr>
              <th scope="col">${this.groupBy || "Meter"}</th>
              <th scope="col" class="num">Total</th>
            </tr>
          </thead>
          <tbody>
            ${(result?.groups ?? []).map(
              (g) => html`<tr>
                <td>${this.label(g.group)}</td>
                <td class="num">${this.number(g.total, 3)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`}
    </section>`;
  }
}
