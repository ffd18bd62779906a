// GraphQL: GraphiQL with the console's key, loaded only when this view opens.
import { html } from "lit";
import { customElement, state } from "lit/decorators.js";
import { message, storedKey } from "../api";
import { View } from "../view";

@customElement("mf-graphql")
export class MfGraphql extends View {
  @state() private failed = "";
  private unmount: (() => void) | undefined;

  override async firstUpdated(): Promise<void> {
    try {
      const { mountGraphiQL } = await import("../graphiql-mount");
      const host = this.querySelector<HTMLElement>(".graphiql-host");
      if (host && this.isConnected) this.unmount = mountGraphiQL(host, storedKey());
    } catch (error) {
      this.failed = message(error);
    }
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.unmount?.();
  }

  override render() {
    return html`<h1 class="sr-only">GraphQL</h1>
      ${this.failed ? html`<p class="error" role="alert">GraphiQL did not load: ${this.failed}</p>` : ""}
      <div class="graphiql-host" aria-label="GraphiQL"></div>`;
  }
}
