// What every view shares: light DOM (one stylesheet), loading / empty / error states.
import { LitElement, html, nothing, type TemplateResult } from "lit";
import { property, state } from "lit/decorators.js";
import { AuthError, message } from "./api";
import type { Route } from "./router";

export type Status = "loading" | "ready" | "error";

export abstract class View extends LitElement {
  @property({ attribute: false }) route!: Route;
  @state() protected status: Status = "loading";
  @state() protected error = "";
  @state() protected notice = "";

  protected override createRenderRoot(): HTMLElement {
    return this;
  }

  /** Run a load; its failure becomes the view's error state (a 401 signs out instead). */
  protected async guard(work: () => Promise<void>): Promise<void> {
    try {
      await work();
      this.status = "ready";
      this.error = "";
    } catch (error) {
      if (error instanceof AuthError) return;
      this.status = "error";
      this.error = message(error);
    }
  }

  protected renderState(): TemplateResult | typeof nothing {
    if (this.status === "loading") {
      return html`<p class="state" role="status">Loading…</p>`;
    }
    if (this.status === "error") {
      return html`<p class="state error" role="alert">Could not load: ${this.error}</p>`;
    }
    return nothing;
  }

  protected renderNotice(): TemplateResult | typeof nothing {
    return this.notice
      ? html`<p class="notice" role="status" aria-live="polite">${this.notice}</p>`
      : nothing;
  }

  protected empty(what: string): TemplateResult {
    return html`<p class="state empty" role="status">${what}</p>`;
  }
}

/** The text of a typed mutation failure (`... on Error { code message }`), or "". */
export function problem(result: { __typename?: string; message?: string; code?: string }): string {
  if (result.message !== undefined && result.__typename?.endsWith("Error")) {
    return result.message;
  }
  return "";
}
